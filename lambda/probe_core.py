"""The rollout probe: does a model about to take traffic answer the labeller's exact request as it was trained to?

vLLM ignores request fields it does not know, so a serving image whose engine no longer understands the choice
constraint (`structured_outputs.choice`) or per-token logprobs answers free text, or answers without a confidence,
and never reports an error: every photo would then be REJECTED or NEEDS_REVIEW. Before any traffic shifts to a new
model, the training pipeline (stacks/training_pipeline/probe_steps.py) runs two requests against it:

1. the labeller's request (`labeller_core.encode_request`: `Taxonomy.build_request` on a photo normalised by
   `classification.images.normalize`, byte for byte what the Lambda sends) must be answered with one of the
   taxonomy's choices, carrying per-token logprobs (the Lambda's confidence);
2. the same request with the choice list narrowed to a label the model did not pick must come back as exactly that
   label: only an engine that applies the constraint can answer it.

Pure: no boto3. The endpoint is anything with `invoke(body: bytes) -> bytes` (labeller_core.Endpoint); its
`TransientFault` propagates (the state machine retries), everything the model answers wrong is a `ProbeFailed`.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from labeller_core import Endpoint, encode_request

from classification.contract import InvalidAnswer, Taxonomy
from classification.images import normalize

PROBE_PHOTO_SIZE = (1600, 1200)  # a 4:3 camera shape: the stock image-token profile tiles it like a real photo


class ProbeFailed(Exception):
    """The new model does not answer as the labeller needs: the rollout stops and the old model keeps serving."""


@dataclass(frozen=True)
class ProbeResult:
    label: str  # what the model answered to the labeller's request
    confidence: float  # from its logprobs, as the labeller computes it
    forced: str  # the other choice the constrained request was narrowed to, and came back as

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_photo() -> bytes:
    """A generated camera-shaped JPEG (a horizon gradient and a few blocks), normalised as the Lambda does."""
    from PIL import Image, ImageDraw

    width, height = PROBE_PHOTO_SIZE
    image = Image.new("RGB", PROBE_PHOTO_SIZE)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = int(80 + 150 * y / height)
        draw.line([(0, y), (width, y)], fill=(shade // 2, shade // 2 + 40, shade))
    for index in range(5):
        left = 100 + index * 290
        draw.rectangle([left, 600, left + 200, 1100], fill=(200 - index * 30, 120, 60 + index * 30))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return normalize(buffer.getvalue()).jpeg


def _answer(endpoint: Endpoint, body: bytes) -> tuple[dict[str, Any], str | None]:
    raw = endpoint.invoke(body)
    try:
        answer = json.loads(raw)
        content = answer["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise ProbeFailed(f"the endpoint's reply is no chat completion: {raw[:200]!r}") from error
    return answer, content if isinstance(content, str) else None


def run_probe(endpoint: Endpoint, taxonomy: Taxonomy, jpeg: bytes) -> ProbeResult:
    """The two checks of the module docstring; ProbeFailed names the first that fails and what came back."""
    answer, content = _answer(endpoint, encode_request(taxonomy, jpeg))
    if content not in taxonomy.choices:
        raise ProbeFailed(
            f"the labeller's request was answered {content!r}, not one of the taxonomy's {len(taxonomy.labels)} "
            "choices: the serving image ignores structured_outputs.choice"
        )
    try:
        prediction = taxonomy.parse_response(answer)
    except InvalidAnswer as error:  # a choice always parses; kept so a contract change cannot slip through
        raise ProbeFailed(f"the answer {content!r} does not parse: {error}") from error
    if prediction.confidence is None:
        raise ProbeFailed(
            f"the answer {content!r} carries no per-token logprobs: the labeller could not compute a confidence "
            "and would store every photo as NEEDS_REVIEW"
        )
    forced = taxonomy.completion(next(label for label in taxonomy.labels if label != prediction.label))
    constrained = taxonomy.build_request(jpeg) | {"structured_outputs": {"choice": [forced]}}
    _, forced_content = _answer(endpoint, json.dumps(constrained, separators=(",", ":")).encode())
    if forced_content != forced:
        raise ProbeFailed(
            f"a request whose only choice was {forced!r} was answered {forced_content!r}: the serving image "
            "ignores structured_outputs.choice"
        )
    return ProbeResult(label=prediction.label, confidence=prediction.confidence, forced=forced)


__all__ = ["ProbeFailed", "ProbeResult", "probe_photo", "run_probe"]
