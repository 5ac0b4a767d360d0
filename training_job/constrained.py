"""The endpoint's answer to one request, computed without the endpoint: grammar-constrained greedy decoding.

Production asks vLLM (xgrammar backend) for one of `structured_outputs.choice` with `logprobs`. vLLM turns the
choices into the grammar `root ::= "choice 1" | "choice 2" | ...`, and at every step masks the logits of every
token the grammar does not allow (set to -inf) *before* it computes the log-probabilities it returns, then takes
the most likely allowed token (temperature 0). So a token the grammar forces (" is" after " this") comes back
with logprob 0.0, and the Lambda's confidence, exp(sum of the returned logprobs), is the product of the
probabilities of each step's choice among the tokens the grammar allowed there, not the answer's probability
under the full vocabulary. `ConstrainedDecoder` reproduces that over a transformers forward pass:

- the request is the Lambda's own body (`Taxonomy.build_request`, in the served model's profile): its messages are
  rendered with the saved processor's chat template as vLLM renders them (`add_generation_prompt`, or
  `continue_final_message` for a prefilled answer; a BOS only with `add_special_tokens`, vLLM's chat default being
  none), its base64 JPEG is decoded as vLLM decodes it (EXIF transpose, RGB), its `structured_outputs.choice`
  becomes vLLM's grammar (`choice_grammar`, the same EBNF escaping as
  `vllm.v1.structured_output.utils.choice_as_grammar`);
- the grammar is compiled by xgrammar==0.2.8 (the version the serving lock pins) over
  `xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=<the model's text vocab size>)`, as vLLM builds
  it, and the matcher stops on the tokenizer's EOS and the generation config's EOS ids (vLLM's
  `all_stop_token_ids`);
- each step: logits of the last position, mask applied (`xgrammar.apply_token_bitmask_inplace`, on the CPU in
  float32), log-softmax, argmax, the token fed back through the KV cache; it ends when the matcher accepts a
  stop token (the EOS is part of the output and of the logprobs, as in vLLM) or after `max_tokens` tokens;
  the request's `top_logprobs` best tokens after the mask are kept per step, a masked one at vLLM's floor -9999.0,
  and token texts keep the leading space a SentencePiece piece stands for (vLLM's convert_ids_list_to_tokens);
- the result is a chat completion in vLLM's shape (`Decoded.response`), read by the Lambda's parser
  (`Taxonomy.parse_response`), so label and confidence come from the same code as in production.

Why not run vLLM inside the evaluation: the training job runs in the Hugging Face PyTorch training image, which
has no vLLM; vLLM pins its own torch and transformers (the serving lock: transformers 5.19 against training's
5.24), so it would need a second environment or a second image in the job, plus an engine start after training
has freed the GPUs. xgrammar is a small wheel (its only heavy dependency, triton, ships with every CUDA torch).
Measured on the tiny model, 24 photos, 2 busy CPU cores, two runs (benchmarks/bench_eval_constrained.py): this
module loads in 15-25 s and answers in 0.9-2.4 s per photo, vLLM is ready after 92-143 s and answers in 0.29-0.43 s
per photo; same labels, confidences within 6e-6. The agreement is tested (tests/training_job/test_constrained.py):
on the session's trained tiny model every validation photo gets the same label, and a confidence within 0.01,
from both.

Limits: one request at a time (batch of one: the prompt is prefilled once and the answer decoded token by
token); one image per request, as a base64 `data:` URL; greedy only (the Lambda sends temperature 0). On a GPU
the weights run in bfloat16 (as the endpoint serves them); on a CPU in float32.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# metrics.json's `confidence_definition`: what every confidence figure of the evaluation means.
CONFIDENCE_DEFINITION = (
    "exp(sum of the answer's token logprobs), the Lambda's confidence, with the logprobs computed after the "
    "choice grammar's mask as vLLM (xgrammar backend) returns them: the product over the answer's tokens of the "
    "token's probability among the tokens the grammar allowed at that step (a forced token counts 1.0)"
)
DATA_URL_PREFIX = "data:"
DETOKENIZE_CONTEXT = 4  # prompt tokens decoded before the answer, so its first token keeps its leading space
MAX_TOP_LOGPROBS = 20  # vLLM's default max_logprobs


class ModelLoadError(RuntimeError):
    """The directory does not hold a model and processor that can be decoded with."""


class RequestError(ValueError):
    """The request is not one the endpoint would answer (no choices, no image ...); the message names the field."""


MASKED_LOGPROB = -9999.0  # vLLM's floor for a token the mask removed (max(logprob, -9999.0) in its server)
SPACE_MARKER = "\u2581"  # SentencePiece's "▁": a piece that starts with it stands for a leading space


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float  # after the grammar's mask, as vLLM returns it
    # Under the whole vocabulary (no mask): how likely the model found the token on its own. Diagnostic only,
    # never in the response: production never sees it.
    full_logprob: float
    # The request's top_logprobs best (token text, logprob) after the mask, this token first (vLLM's order).
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Decoded:
    content: str  # the answer text (EOS excluded), one of the choices unless max_tokens cut it
    tokens: tuple[TokenLogprob, ...]  # every generated token, the stop token included
    prompt_tokens: int
    finish_reason: str  # "stop" (the grammar accepted a stop token) or "length" (max_tokens reached)

    @property
    def confidence(self) -> float:
        """exp(sum of the logprobs): what the Lambda computes from the response."""
        return math.exp(sum(t.logprob for t in self.tokens))

    def response(self, model: str = "local") -> dict[str, Any]:
        """The chat completion in vLLM's shape (what `Taxonomy.parse_response` reads in the Lambda)."""
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.content},
                    "logprobs": {
                        "content": [
                            {
                                "token": t.token,
                                "logprob": t.logprob,
                                "bytes": list(t.token.encode("utf-8")),
                                "top_logprobs": [
                                    {"token": token, "logprob": value, "bytes": list(token.encode("utf-8"))}
                                    for token, value in (t.top or ((t.token, t.logprob),))
                                ],
                            }
                            for t in self.tokens
                        ]
                    },
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": len(self.tokens),
                "total_tokens": self.prompt_tokens + len(self.tokens),
            },
        }


def choice_grammar(choices: Sequence[str]) -> str:
    """vLLM's grammar for `structured_outputs.choice`: an EBNF alternation of the literal choices."""
    escapes = {"\\": r"\\", '"': r"\"", "\n": r"\n", "\r": r"\r", "\t": r"\t"}

    def escape(ch: str) -> str:
        if ch in escapes:
            return escapes[ch]
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return f"\\u{ord(ch):04x}"
        return ch

    return "root ::= " + " | ".join('"' + "".join(escape(ch) for ch in choice) + '"' for choice in choices)


@dataclass(frozen=True)
class ParsedRequest:
    messages: list[dict[str, Any]]  # training format: image parts are {"type": "image"}
    image_bytes: bytes
    choices: tuple[str, ...]
    max_tokens: int | None
    # vLLM's chat-completion extras, with vLLM's defaults (vllm/entrypoints/openai/chat_completion/protocol.py)
    add_special_tokens: bool = False
    continue_final_message: bool = False
    top_logprobs: int = 1


def parse_request(request: Mapping[str, Any]) -> ParsedRequest:
    """The fields of a chat completion body that decide the endpoint's answer; RequestError names a bad one."""
    structured = request.get("structured_outputs")
    choices = structured.get("choice") if isinstance(structured, Mapping) else None
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise RequestError("structured_outputs.choice must be a non-empty list of non-empty strings")
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens"))
    positive_int = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1
    if max_tokens is not None and not positive_int:
        raise RequestError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    flags = {}
    for name, default in (("add_special_tokens", False), ("continue_final_message", False)):
        flags[name] = request.get(name, default)
        if not isinstance(flags[name], bool):
            raise RequestError(f"{name} must be true or false, got {flags[name]!r}")
    if flags["continue_final_message"] and request.get("add_generation_prompt", True) is not False:
        # vLLM refuses the pair: a prefilled answer cannot follow a new generation prompt.
        raise RequestError("continue_final_message needs add_generation_prompt false")
    top = request.get("top_logprobs", 1)
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise RequestError(f"top_logprobs must be an integer 0..{MAX_TOP_LOGPROBS}, got {top!r}")
    raw_messages = request.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError("messages must be a non-empty list")
    messages: list[dict[str, Any]] = []
    images: list[bytes] = []
    for index, message in enumerate(raw_messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise RequestError(f"messages[{index}] must be an object with a role")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise RequestError(f"messages[{index}].content must be a string or a list of parts")
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                images.append(_data_url_bytes(part.get("image_url"), f"messages[{index}]"))
                parts.append({"type": "image"})
            else:
                raise RequestError(f"messages[{index}] has a part that is neither text nor image_url: {part!r}")
        messages.append({"role": message["role"], "content": parts})
    if len(images) != 1:
        raise RequestError(f"the request must hold exactly one image, it holds {len(images)}")
    return ParsedRequest(messages, images[0], tuple(choices), max_tokens, top_logprobs=max(top, 1), **flags)


def _data_url_bytes(image_url: Any, where: str) -> bytes:
    url = image_url.get("url") if isinstance(image_url, Mapping) else None
    if not isinstance(url, str) or not url.startswith(DATA_URL_PREFIX) or ";base64," not in url:
        raise RequestError(f"{where}: image_url.url must be a base64 data: URL (nothing is fetched)")
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(f"{where}: image_url.url is not valid base64: {error}") from error


def decode_image(data: bytes) -> Any:  # -> PIL.Image.Image
    """The pixels vLLM's image loader makes of the bytes: EXIF orientation applied, converted to RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image = ImageOps.exif_transpose(image)
        image.load()
    except (OSError, UnidentifiedImageError) as error:
        raise RequestError(f"the request's image cannot be decoded: {error}") from error
    return image if image.mode == "RGB" else image.convert("RGB")


class ConstrainedDecoder:
    """A saved model (training output or tiny test model) that answers requests the way the endpoint does.

    `device` defaults to the first GPU when there is one (weights in bfloat16), else the CPU (float32).
    """

    def __init__(self, model_dir: str | Path, *, device: str | None = None) -> None:
        import torch
        import xgrammar
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ModelLoadError(f"{self.model_dir} has no config.json: not a saved model directory")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # float32 on CPUs: they run bf16 matmuls slowly or not at all, and the local vLLM serves float32 there.
        dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        try:
            self.processor = AutoProcessor.from_pretrained(self.model_dir)
            model = AutoModelForImageTextToText.from_pretrained(self.model_dir, dtype=dtype)
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(f"cannot load a model and processor from {self.model_dir}: {error}") from error
        self.model = model.to(self.device).eval()
        if not getattr(self.processor, "chat_template", None):
            raise ModelLoadError(f"{self.model_dir} has no chat template: the prompt could not match training")
        self.tokenizer = self.processor.tokenizer
        text_config = getattr(model.config, "text_config", model.config)
        self.vocab_size = int(text_config.vocab_size)
        self.stop_token_ids = sorted(_stop_token_ids(self.tokenizer.eos_token_id, model.generation_config))
        if not self.stop_token_ids:
            raise ModelLoadError(f"{self.model_dir} defines no EOS token: a constrained answer could never end")
        tokenizer_info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size)
        self._compiler = xgrammar.GrammarCompiler(tokenizer_info, max_threads=1, cache_enabled=True)
        self._compiled = lru_cache(maxsize=16)(self._compile)
        self._torch = torch
        self._xgrammar = xgrammar

    def _compile(self, choices: tuple[str, ...]) -> Any:
        try:
            return self._compiler.compile_grammar(choice_grammar(choices))
        except RuntimeError as error:
            raise RequestError(f"structured_outputs.choice cannot be turned into a grammar: {error}") from error

    def render_prompt(self, messages: list[dict[str, Any]], *, continue_final_message: bool = False) -> str:
        """The chat template's text for the request (what training rendered before the answer), or with the final
        (assistant) message left open for the model to continue."""
        return self.processor.apply_chat_template(
            messages,
            add_generation_prompt=not continue_final_message,
            continue_final_message=continue_final_message,
            tokenize=False,
        )

    def answer(self, request: Mapping[str, Any]) -> Decoded:
        """Answer a chat completion body (the Lambda's request) as the endpoint would."""
        parsed = parse_request(request)
        return self.decode(
            parsed.messages,
            decode_image(parsed.image_bytes),
            parsed.choices,
            parsed.max_tokens,
            add_special_tokens=parsed.add_special_tokens,
            continue_final_message=parsed.continue_final_message,
            top_logprobs=parsed.top_logprobs,
        )

    def decode(
        self,
        messages: list[dict[str, Any]],
        image: Any,
        choices: Sequence[str],
        max_tokens: int | None = None,
        *,
        add_special_tokens: bool = False,
        continue_final_message: bool = False,
        top_logprobs: int = 1,
    ) -> Decoded:
        """Greedy decoding of `messages` + `image`, masked by the choice grammar, logprobs after the mask."""
        torch = self._torch
        xgr = self._xgrammar
        matcher = xgr.GrammarMatcher(self._compiled(tuple(choices)), override_stop_tokens=self.stop_token_ids)
        bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        prompt = self.render_prompt(messages, continue_final_message=continue_final_message)
        inputs = self.processor(
            images=[image], text=[prompt], return_tensors="pt", add_special_tokens=add_special_tokens
        ).to(self.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        limit = max_tokens if max_tokens is not None else self.vocab_size  # the grammar ends it long before
        tokens: list[TokenLogprob] = []
        finish_reason = "length"
        with torch.inference_mode():
            out = self.model(**inputs, use_cache=True)
            length = prompt_tokens
            while len(tokens) < limit:
                logits = out.logits[0, -1].float().cpu().unsqueeze(0)
                full = logits[0].log_softmax(-1)
                matcher.fill_next_token_bitmask(bitmask)
                xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=self.vocab_size)
                logprobs = logits[0].log_softmax(-1)
                token_id = int(logprobs.argmax())
                if not matcher.accept_token(token_id):  # cannot happen: the mask allowed only acceptable tokens
                    raise RuntimeError(f"the grammar refused token {token_id} it had allowed")
                best = logprobs.topk(top_logprobs)
                top = tuple(
                    (self.token_text(int(i)), max(float(v), MASKED_LOGPROB))
                    for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
                )
                text = self.token_text(token_id)
                tokens.append(
                    TokenLogprob(token_id, text, float(logprobs[token_id]), float(full[token_id]), top=top)
                )
                if matcher.is_terminated():
                    finish_reason = "stop"
                    break
                length += 1
                out = self.model(
                    input_ids=torch.tensor([[token_id]], device=self.device),
                    attention_mask=torch.ones(1, length, dtype=torch.long, device=self.device),
                    cache=out.cache,
                    use_cache=True,
                )
        answer_ids = [t.token_id for t in tokens if t.token_id not in self.stop_token_ids]
        context = inputs["input_ids"][0, -DETOKENIZE_CONTEXT:].tolist()
        return Decoded(self._detokenize(context, answer_ids), tuple(tokens), prompt_tokens, finish_reason)

    def token_text(self, token_id: int) -> str:
        """One token's text as vLLM reports it in logprobs: decoded alone, the leading space a SentencePiece piece
        stands for restored (vllm/tokenizers/detokenizer_utils.py convert_ids_list_to_tokens)."""
        text = self.tokenizer.decode([token_id]) or ""
        piece = self.tokenizer.convert_ids_to_tokens(token_id) or ""
        markers = len(piece) - len(piece.lstrip(SPACE_MARKER))
        missing = markers - (len(text) - len(text.lstrip(" ")))
        return " " * missing + text if missing > 0 else text

    def _detokenize(self, context: list[int], ids: list[int]) -> str:
        # In context, as vLLM's incremental detokenizer reads the output after the prompt: a SentencePiece
        # tokenizer drops the leading space of an answer decoded on its own (" this" -> "this").
        before = self.tokenizer.decode(context)
        return self.tokenizer.decode(context + ids)[len(before) :]


def _stop_token_ids(eos_token_id: int | None, generation_config: Any) -> set[int]:
    # vLLM stops on the tokenizer's EOS and every EOS id of the generation config (all_stop_token_ids).
    stops: set[int] = set() if eos_token_id is None else {int(eos_token_id)}
    extra = getattr(generation_config, "eos_token_id", None)
    if isinstance(extra, int):
        stops.add(extra)
    elif isinstance(extra, Iterable):
        stops.update(int(i) for i in extra)
    return stops
