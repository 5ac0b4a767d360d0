"""Answer a chat request with the most likely allowed choice of a LLaVA-NeXT model, on CPU with transformers.

Production constrains vLLM's decoding to the request's `structured_outputs.choice`; here every allowed answer
is scored instead: the teacher-forced log-likelihood of its tokens given the prompt and the photo. As in vLLM,
the prompt is the chat template with the generation prompt, and a choice is its literal text appended after it
(then EOS): the choices `Taxonomy.choices` sends are exactly what the template renders for a trained answer
(leading space included), so they score the tokens training taught, and a choice spelled differently scores
as the different text it is. The answer is the choice with the highest total log-probability, so it is always
one of the choices, never free text; its token log-probabilities (EOS included, which says the answer is
complete) are reported like vLLM's `logprobs`.

Cost: one forward pass over the prompt and image, one over the tokens every choice shares (" this is a photo
of"), then one batched pass over the differing tails against the cached prompt, so 26 choices cost little more
than one. Memory for the batched pass grows with choices x prompt length (the KV cache is repeated per choice).
Difference from vLLM: xgrammar picks the greedy token among those the choices allow, step by step; this picks
the choice with the best total score. They agree whenever one choice dominates, which a fine-tuned model does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from model_code.chat_protocol import ChatRequest, RequestError, TokenLogprob

TAXONOMY_FILE = "taxonomy.json"  # training_job/train.py copies the dataset's taxonomy next to the weights


class ModelLoadError(RuntimeError):
    """The directory does not hold a model this backend can serve."""


@dataclass(frozen=True)
class ScoredAnswer:
    content: str  # the chosen choice, verbatim
    tokens: tuple[TokenLogprob, ...]
    prompt_tokens: int
    # Every eligible choice's total log-probability, best first (for tests and debugging).
    ranking: tuple[tuple[str, float], ...]


def default_choices(model_dir: str | Path) -> list[str] | None:
    """The allowed answers of the taxonomy saved with the model, or None when it has none."""
    from classification.contract import InvalidTaxonomy, Taxonomy

    path = Path(model_dir) / TAXONOMY_FILE
    if not path.is_file():
        return None
    try:
        return Taxonomy.load(path).choices
    except InvalidTaxonomy as error:
        raise ModelLoadError(f"{path} is not a usable taxonomy: {error}") from error


class ChoiceScorer:
    """A saved model (training output or tiny test model) loaded for scoring; thread-safe.

    `device` defaults to the CPU (float32, the local backend); training_job/evaluate.py passes "cuda" on a GPU
    host, where the weights load in bfloat16 as vLLM serves them.
    """

    def __init__(self, model_dir: str | Path, *, threads: int | None = None, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ModelLoadError(f"{self.model_dir} has no config.json: not a saved model directory")
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        # float32 on CPUs: they run bf16 matmuls slowly or not at all, and scores must not depend on the host.
        dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_dir)
            model = AutoModelForImageTextToText.from_pretrained(self.model_dir, dtype=dtype)
            self.model = model.to(self.device).eval()
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(f"cannot load a model and processor from {self.model_dir}: {error}") from error
        if not getattr(self.processor, "chat_template", None):
            raise ModelLoadError(f"{self.model_dir} has no chat template: the prompt could not match training")
        self.tokenizer = self.processor.tokenizer
        self._torch = torch
        # One request at a time: concurrent forward passes would only compete for the same cores and memory.
        self._lock = threading.Lock()
        self._continuations = lru_cache(maxsize=64)(self._continuation_ids)

    # -- text ---------------------------------------------------------------------------------------------------

    def render_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The chat template's text for the request (what training rendered before the answer)."""
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _encode(self, text: str) -> list[int]:
        # No BOS: the chat template path adds none in training or in vLLM (training_job/evaluate.py does the same).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _continuation_ids(self, messages_json: str, choices: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
        messages = json.loads(messages_json)
        prompt = self.render_prompt(messages)
        prompt_ids = self._encode(prompt)
        eos = self.tokenizer.eos_token_id
        result = []
        for choice in choices:
            # vLLM's view: the prompt, then the choice's text verbatim (never re-rendered through the template,
            # so a choice lacking the leading space the template adds is scored as the different text it is).
            full_ids = self._encode(prompt + choice)
            # In context, as training tokenized the whole row; after a merge across the boundary, on its own.
            in_context = full_ids[: len(prompt_ids)] == prompt_ids
            ids = full_ids[len(prompt_ids) :] if in_context else self._encode(choice)
            if not ids:
                raise RequestError(f"choice {choice!r} renders to no tokens", param="structured_outputs")
            # EOS ends the answer; its probability says the answer is complete (vLLM's choice grammar ends there).
            result.append(tuple(ids) + ((eos,) if eos is not None else ()))
        return tuple(result)

    # -- scoring ------------------------------------------------------------------------------------------------

    def answer(self, request: ChatRequest) -> ScoredAnswer:
        messages_json = json.dumps(request.messages, sort_keys=True)
        continuations = self._continuations(messages_json, request.choices)
        eos = self.tokenizer.eos_token_id
        eligible = [
            index
            for index, ids in enumerate(continuations)
            if request.max_tokens is None or len([t for t in ids if t != eos]) <= request.max_tokens
        ]
        if not eligible:
            shortest = min(len(ids) for ids in continuations)
            raise RequestError(
                f"max_tokens={request.max_tokens} is shorter than every choice "
                f"(the shortest has {shortest} tokens)",
                param="max_tokens",
            )
        prompt = self.render_prompt(request.messages)
        with self._lock:
            inputs = self.processor(
                images=[request.image], text=[prompt], return_tensors="pt", add_special_tokens=False
            ).to(self.device)
            logprob_rows, prompt_tokens = self._score([continuations[i] for i in eligible], inputs)
        totals = [
            float(rows.gather(1, _column(self._torch, ids, rows.device)).sum()) for rows, ids in logprob_rows
        ]
        order = sorted(range(len(eligible)), key=lambda k: totals[k], reverse=True)
        best = order[0]
        rows, ids = logprob_rows[best]
        tokens = []
        for position, token_id in enumerate(ids):
            row = rows[position]
            top: tuple[tuple[str, float], ...] = ()
            if request.top_logprobs:
                values, indices = row.topk(request.top_logprobs)
                top = tuple(
                    (self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, indices, strict=True)
                )
            tokens.append(TokenLogprob(self.tokenizer.decode([token_id]), float(row[token_id]), top))
        return ScoredAnswer(
            content=request.choices[eligible[best]],
            tokens=tuple(tokens),
            prompt_tokens=prompt_tokens,
            ranking=tuple((request.choices[eligible[k]], totals[k]) for k in order),
        )

    def _score(
        self, continuations: Sequence[tuple[int, ...]], inputs: Any
    ) -> tuple[list[tuple[Any, list[int]]], int]:
        """Log-softmax rows predicting each continuation token: [(rows[len(ids), vocab], ids)], prompt length."""
        torch = self._torch
        device = self.device
        prompt_len = int(inputs["input_ids"].shape[1])
        # Tokens every choice starts with are run once; at least one token per choice stays in the batched pass.
        shared = _common_prefix_length(continuations)
        shared = min(shared, min(len(ids) for ids in continuations) - 1)
        with torch.inference_mode():
            out = self.model(**inputs, use_cache=True)
            rows = [out.logits[0, -1:].float().log_softmax(-1)]
            cache = out.cache
            length = prompt_len
            if shared:
                prefix = torch.tensor([list(continuations[0][:shared])], device=device)
                out = self.model(
                    input_ids=prefix,
                    attention_mask=torch.ones(1, length + shared, dtype=torch.long, device=device),
                    cache=cache,
                    use_cache=True,
                )
                rows.append(out.logits[0].float().log_softmax(-1))
                cache = out.cache
                length += shared
            shared_rows = torch.cat(rows)  # row k predicts continuation token k, for k <= shared
            tails = [ids[shared:] for ids in continuations]
            width = max(len(tail) for tail in tails)
            if width > 1:
                cache.batch_repeat_interleave(len(tails))
                pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                batch = torch.full((len(tails), width - 1), pad, dtype=torch.long, device=device)
                for index, tail in enumerate(tails):
                    batch[index, : len(tail) - 1] = torch.tensor(tail[:-1], device=device)
                # Right padding: a padded position only follows the real tokens, so it changes none of their rows.
                out = self.model(
                    input_ids=batch,
                    attention_mask=torch.ones(len(tails), length + width - 1, dtype=torch.long, device=device),
                    cache=cache,
                    use_cache=False,
                )
                tail_rows = out.logits.float().log_softmax(-1)
            result = []
            for index, ids in enumerate(continuations):
                own = [shared_rows]
                if len(tails[index]) > 1:
                    own.append(tail_rows[index, : len(tails[index]) - 1])
                result.append((torch.cat(own)[: len(ids)], list(ids)))
        return result, prompt_len


def _common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    first = sequences[0]
    length = 0
    while length < len(first) and all(len(s) > length and s[length] == first[length] for s in sequences):
        length += 1
    return length


def _column(torch: Any, ids: Sequence[int], device: Any) -> Any:
    return torch.tensor(list(ids), device=device).unsqueeze(1)
