"""The OpenAI-style chat request/response of the production endpoint (LMI async mode -> vLLM), for local serving.

`parse_request` validates an `/invocations` body the way the production endpoint must be fed and turns it into a
`ChatRequest`: the messages converted to the training format (the `image_url` part becomes `{"type": "image"}`,
so the processor's chat template renders exactly the text the model was trained on), the decoded image, and
the allowed answers. Everything wrong with a request raises `RequestError` with the HTTP status to answer and
a message that names the offending field; nothing here needs torch.

`chat_completion` builds the response in vLLM's shape: `choices[0].message.content`,
`choices[0].logprobs.content[]` (`token`, `logprob`, `bytes`, `top_logprobs`), `usage`.

Supported request fields (others are ignored, as vLLM ignores unknown fields):
- `messages` (required): roles `system` / `user` / `assistant`, the last one `user`; content a string or a list
  of `text` / `image_url` parts; exactly one image, as a base64 `data:` URL (nothing is fetched);
- `structured_outputs.choice` (list of strings): the allowed answers; without it the server's default choices
  (the model's `taxonomy.json`) apply, and without those the request is refused;
- `max_tokens` / `max_completion_tokens` (int >= 1): choices longer than this (tokens without EOS) are excluded;
- `temperature` (0..2): accepted; the answer is always the most likely choice (deterministic);
- `logprobs` (bool), `top_logprobs` (0..20): per-token log-probabilities of the answer;
- `n` must be 1 and `stream` false; other structured-output kinds (json, regex, grammar) are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from classification.images import InvalidImage, open_rgb

# SageMaker real-time inference refuses larger payloads; the local server mirrors it so a request that works
# here also fits production.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
MAX_TOP_LOGPROBS = 20  # OpenAI's and vLLM's upper bound
MAX_IMAGES_PER_REQUEST = 1  # serving.properties: option.limit_mm_per_prompt={"image":1}
MAX_TEMPERATURE = 2.0
_ROLES = ("system", "user", "assistant")
# data:[<media type>][;<parameter>]*;base64,<data>
_DATA_URL_RE = re.compile(r"^data:(?P<media>[^;,]*)(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)


class RequestError(ValueError):
    """The request cannot be served; `status` is the HTTP status to answer with, `param` the field at fault."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param

    def to_json(self) -> dict[str, Any]:
        kind = "BadRequestError" if 400 <= self.status < 500 else "InternalServerError"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class ChatRequest:
    # Training-format messages: content is always a list of {"type": "text", "text"} / {"type": "image"} parts.
    messages: list[dict[str, Any]]
    image: Image.Image
    choices: tuple[str, ...]
    max_tokens: int | None
    logprobs: bool
    top_logprobs: int
    model: str | None


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def parse_request(body: bytes, *, default_choices: Sequence[str] | None = None) -> ChatRequest:
    """Validate an /invocations body; RequestError (4xx) on anything the endpoint cannot answer."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise RequestError(f"request body is not UTF-8 text: {error}") from error
    except json.JSONDecodeError as error:
        raise RequestError(f"request body is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise RequestError(f"request body must be a JSON object, got {type(data).__name__}")

    if data.get("stream"):
        raise RequestError("stream=true is not supported by this backend", param="stream")
    n = data.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise RequestError(f"n must be 1 (one answer per photo), got {n!r}", param="n")
    if "guided_choice" in data:
        # vLLM >= 0.12 removed it; accepting it here would hide a request production would answer unconstrained.
        raise RequestError(
            "guided_choice was removed in vLLM 0.12: send structured_outputs: {choice: [...]}",
            param="guided_choice",
        )
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(f"model must be a string, got {type(model).__name__}", param="model")

    messages, image = _parse_messages(data.get("messages"))
    choices = _parse_choices(data.get("structured_outputs"), default_choices)
    max_tokens = _optional_int(data, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _optional_int(data, "max_tokens", minimum=1)
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        raise RequestError(f"temperature must be a number in [0, {MAX_TEMPERATURE}], got {temperature!r}")
    logprobs = data.get("logprobs", False)
    if logprobs is None:
        logprobs = False
    if not isinstance(logprobs, bool):
        raise RequestError(f"logprobs must be true or false, got {logprobs!r}", param="logprobs")
    top_logprobs = _optional_int(data, "top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS) or 0
    if top_logprobs and not logprobs:
        raise RequestError("top_logprobs needs logprobs=true", param="top_logprobs")
    return ChatRequest(
        messages=messages,
        image=image,
        choices=choices,
        max_tokens=max_tokens,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        model=model,
    )


def _optional_int(data: Mapping[str, Any], name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    in_range = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if not in_range or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise RequestError(f"{name} must be an integer {bound}, got {value!r}", param=name)
    return value


def _parse_messages(raw: Any) -> tuple[list[dict[str, Any]], Image.Image]:
    if raw is None:
        raise RequestError("messages is required (a list of chat messages)", param="messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list", param="messages")
    converted: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object, got {type(message).__name__}", param=where)
        role = message.get("role")
        if role not in _ROLES:
            raise RequestError(f"{where}.role must be one of {', '.join(_ROLES)}, got {role!r}", param=where)
        parts = _parse_content(message.get("content"), where, images)
        if role != "user" and any(part["type"] == "image" for part in parts):
            raise RequestError(f"{where}: only user messages can carry an image", param=where)
        if role != "user" and (len(parts) != 1 or parts[0]["type"] != "text"):
            # The LLaVA-NeXT chat template reads content[0].text of system and assistant turns.
            raise RequestError(f"{where}: a {role} message must hold exactly one text part", param=where)
        converted.append({"role": role, "content": parts})
    if converted[-1]["role"] != "user":
        raise RequestError("the last message must come from the user (the answer follows it)", param="messages")
    if not images:
        raise RequestError("the request has no image: add an image_url part with a data: URL", param="messages")
    if len(images) > MAX_IMAGES_PER_REQUEST:
        raise RequestError(
            f"the request has {len(images)} images; at most {MAX_IMAGES_PER_REQUEST} per request",
            param="messages",
        )
    return converted, images[0]


def _parse_content(content: Any, where: str, images: list[Image.Image]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise RequestError(f"{where}.content must be a string or a non-empty list of parts", param=where)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}.content[{index}]"
        if not isinstance(part, dict):
            raise RequestError(f"{at} must be an object, got {type(part).__name__}", param=at)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise RequestError(f"{at}.text must be a string, got {type(text).__name__}", param=at)
            parts.append({"type": "text", "text": text})
        elif kind == "image_url":
            images.append(_decode_image_url(part.get("image_url"), at))
            parts.append({"type": "image"})  # the training format: the processor inserts the image tokens
        else:
            raise RequestError(f"{at}.type must be text or image_url, got {kind!r}", param=at)
    return parts


def _decode_image_url(raw: Any, at: str) -> Image.Image:
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str):
        raise RequestError(f"{at}.image_url must be {{'url': 'data:image/...;base64,...'}}", param=at)
    match = _DATA_URL_RE.match(url)
    if match is None:
        shown = url[:60] + ("..." if len(url) > 60 else "")
        raise RequestError(
            f"{at}.image_url must be a base64 data URL (data:image/jpeg;base64,...); this backend fetches "
            f"nothing, got {shown!r}",
            param=at,
        )
    media = match.group("media").strip().lower()
    if media and not media.startswith("image/"):
        raise RequestError(f"{at}.image_url has media type {media!r}, not image/*", param=at)
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(f"{at}.image_url is not valid base64: {error}", param=at) from error
    try:
        # The same decoder as the Lambda and the dataset builder: identical pixels, identical refusals.
        return open_rgb(data)
    except InvalidImage as error:
        raise RequestError(f"{at}.image_url: {error.reason}", param=at) from error


def _parse_choices(raw: Any, default: Sequence[str] | None) -> tuple[str, ...]:
    if raw is None:
        if default:
            return tuple(default)
        raise RequestError(
            "structured_outputs.choice is required: this backend only answers with one of the allowed choices "
            "(or start it with a taxonomy)",
            param="structured_outputs",
        )
    if not isinstance(raw, dict):
        raise RequestError("structured_outputs must be an object", param="structured_outputs")
    unsupported = sorted(key for key, value in raw.items() if key != "choice" and value is not None)
    if unsupported:
        raise RequestError(
            f"structured_outputs.{unsupported[0]} is not supported here; only choice is",
            param="structured_outputs",
        )
    choices = raw.get("choice")
    if not isinstance(choices, list) or not choices:
        raise RequestError("structured_outputs.choice must be a non-empty list", param="structured_outputs")
    for index, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice:
            raise RequestError(
                f"structured_outputs.choice[{index}] must be a non-empty string, got {choice!r}",
                param="structured_outputs",
            )
    if len(set(choices)) != len(choices):
        raise RequestError("structured_outputs.choice lists the same answer twice", param="structured_outputs")
    return tuple(choices)


def chat_completion(
    *,
    content: str,
    model: str,
    prompt_tokens: int,
    tokens: Sequence[TokenLogprob],
    logprobs: bool,
) -> dict[str, Any]:
    """A vLLM chat.completion response whose answer is `content` (one of the request's choices)."""
    logprob_block = None
    if logprobs:
        logprob_block = {
            "content": [
                {
                    "token": token.token,
                    "logprob": token.logprob,
                    "bytes": list(token.token.encode("utf-8")),
                    "top_logprobs": [
                        {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}
                        for text, value in token.top
                    ],
                }
                for token in tokens
            ]
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": []},
                "logprobs": logprob_block,
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        },
    }
