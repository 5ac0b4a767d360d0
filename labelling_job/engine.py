"""vLLM's offline engine, configured like the endpoint, answering the Lambda's own requests.

Configuration: model_code/serving.properties through `stacks.serving.serving_properties.engine_args` (the mapping
LMI applies), spelled as LMI's command line (`cli_args`) and parsed by vLLM's own argument parser, so every value
has the type vLLM's server would give it. The only local choice is the server's on a CPU: eager mode.

A request is the body `labeller_core.encode_request` builds (what the endpoint receives); the engine gets its
`messages` unchanged (`LLM.chat`, the same chat parsing as the server) and the sampling parameters vLLM's server
derives from the same body (`ChatCompletionRequest.to_sampling_params`, with the model's generation defaults as
the server takes them), rendered with the body's own chat options (`chat_options`: BOS, a prefilled answer). The
outputs come back as chat-completion responses in the server's shape (vllm
entrypoints/openai/chat_completion/serving.py `_create_chat_logprobs`), for `Taxonomy.parse_response`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from stacks.serving import serving_properties
from stacks.serving.serving_properties import cli_args

# vLLM's server clamps a logprob to this (a -inf would not survive JSON).
MIN_LOGPROB = -9999.0


def engine_kwargs(properties: Mapping[str, str], *, device: Literal["gpu", "cpu"]) -> dict[str, Any]:
    """`vllm.LLM` keyword arguments for serving.properties, typed by vLLM's own argument parser."""
    from vllm.engine.arg_utils import EngineArgs

    args = serving_properties.engine_args(dict(properties), device=device)
    if device == "cpu":
        # model_code/vllm_server.py's choice for the CPU build: torch.compile's warm-up buys nothing there.
        args.setdefault("enforce_eager", True)
    parser = EngineArgs.add_cli_args(
        _vllm_class(("vllm.utils.argparse_utils", "vllm.utils"), "FlexibleArgumentParser")()
    )
    namespace = parser.parse_args(["--model", "unused", *cli_args(args)])
    return {name: getattr(namespace, name) for name in args}


class OfflineEngine:
    """One `vllm.LLM` for the whole job; `answer` runs a batch of requests through it at once."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: Literal["gpu", "cpu"],
        properties: Mapping[str, str] | None = None,
    ) -> None:
        from vllm import LLM

        self.kwargs = engine_kwargs(properties or serving_properties.load(), device=device)
        self.llm = LLM(model=str(model_dir), **self.kwargs)
        # What the server passes every request as its defaults (the model's generation_config.json, if any).
        self._defaults = self.llm.llm_engine.model_config.get_diff_sampling_param()

    def answer(self, requests: Sequence[bytes]) -> list[dict[str, Any]]:
        """Chat-completion responses to `requests` (labeller_core.encode_request bodies), in their order."""
        request_class = _vllm_class(
            ("vllm.entrypoints.openai.chat_completion.protocol", "vllm.entrypoints.openai.protocol"),
            "ChatCompletionRequest",
        )
        bodies = [json.loads(request) for request in requests]
        parsed = [request_class.model_validate(body) for body in bodies]
        params = [request.to_sampling_params(request.max_tokens, self._defaults) for request in parsed]
        outputs = self.llm.chat(
            [body["messages"] for body in bodies], params, use_tqdm=False, **chat_options(parsed)
        )
        pairs = zip(outputs, parsed, strict=True)
        return [chat_response(output, request.top_logprobs) for output, request in pairs]


def chat_options(parsed: Sequence[Any]) -> dict[str, Any]:
    """`LLM.chat`'s rendering options for requests that carry them (a base model's profile: BOS, a prefilled
    answer), as the server applies each request's `add_generation_prompt`, `continue_final_message` and
    `add_special_tokens` (its TokenizeParams). One call renders every request alike, so they must agree: a job
    runs one model and so one profile."""
    options = {
        (request.add_generation_prompt, request.continue_final_message, request.add_special_tokens)
        for request in parsed
    }
    if len(options) > 1:
        raise ValueError(f"one engine call cannot render requests of different profiles: {sorted(options)}")
    if not options:
        return {}
    ((generation_prompt, continue_final, special_tokens),) = options
    return {
        "add_generation_prompt": generation_prompt,
        "continue_final_message": continue_final,
        "tokenization_kwargs": {"add_special_tokens": special_tokens},
    }


def _vllm_class(modules: Sequence[str], name: str) -> Any:
    """A vLLM class from the first module that has it: vLLM moved these between releases (the local engine is
    0.32, the pinned LMI image's may be older), and the job must run on the image's own vLLM."""
    import importlib

    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"vLLM has no {name} in any of {', '.join(modules)}")


def chat_response(output: Any, top_logprobs: int | None) -> dict[str, Any]:
    """A `vllm.RequestOutput` as the server's non-streaming chat completion (one choice, logprobs per token)."""
    completion = output.outputs[0]
    content: list[dict[str, Any]] = []
    for token_id, step in zip(completion.token_ids, completion.logprobs or [], strict=False):
        chosen = step.get(token_id) if step else None
        if chosen is None:
            # The server's fallback for a token without a logprob: ChatCompletionLogProb's default value.
            content.append({"token": str(token_id), "logprob": MIN_LOGPROB, "top_logprobs": []})
            continue
        ranked = list(step.items())[: top_logprobs or 0]
        content.append(
            {
                "token": chosen.decoded_token,
                "logprob": max(chosen.logprob, MIN_LOGPROB),
                "top_logprobs": [
                    {"token": logprob.decoded_token, "logprob": max(logprob.logprob, MIN_LOGPROB)}
                    for _token, logprob in ranked
                ],
            }
        )
    return {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": {"content": content} if completion.logprobs is not None else None,
                "finish_reason": completion.finish_reason,
            }
        ],
    }
