"""Model profiles: what differs between serving the base model and serving a fine-tune, in one place.

A fine-tune learnt one question and one answer shape (the seed's fill-in-the-blank prompt, answered
`" this is a photo of X."`, no BOS: training_job/build_dataset.py, TRL's chat template). The base
`llava-hf/llava-v1.6-mistral-7b-hf` never saw that format; it was instruction-tuned on short-answer questions
("Answer the question using a single word or phrase.", the LLaVA-1.5 recipe LLaVA-NeXT kept), on the stock anyres
grid, with a BOS token before every conversation. So a profile fixes, per served model:

- `shape`: how the question is asked and what the choice grammar allows (`AnswerShape`);
- `add_bos`: vLLM's `add_special_tokens` (the chat template adds no BOS; the hub's usage example's processor does);
- `describe_labels`: the taxonomy's short descriptions of its vague classes (taxonomy.json `descriptions`) in the
  prompt; a fine-tune learnt the classes from examples and keeps the prompt it was trained with;
- `image_token_profile`: the grid the model must be served with (`stock` for the base, which was trained on it;
  None: the model's own config.json says, as a fine-tune carries the profile it was trained with);
- `top_logprobs`: how many alternatives per answer token vLLM returns (the evidence of classification/margin.py);
- `routing`: which evidence decides LABELED vs NEEDS_REVIEW (`routing_rule`).

The fine-tune profile reproduces today's request and training rows byte for byte (a test compares them).

Which profile a model is served with is recorded next to its weights, in `model_profile.json` (`PROFILE_FILE`),
written by the staging tool (tools/stage_base_model.py: a base profile) and by training (serving_export: the
fine-tune profile). A model directory without the file is a fine-tune (models trained before profiles existed).
`resolve_profile` is the one reader the Lambda, the evaluation and the labelling job call.

Standard library only: the Lambda bundles classification/ as is.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classification.contract import (
    ASSISTANT_TEXT_PREFIX,
    MAX_ANSWER_TOKENS,
    InvalidAnswer,
    Prediction,
    confidence_of,
)
from classification.margin import answer_margin

if TYPE_CHECKING:
    from classification.contract import Taxonomy

PROFILE_FILE = "model_profile.json"
FINE_TUNE_NAME = "fine-tune"
BASE_NAME = "base"
BASE_PREFILLED_NAME = "base-prefilled"

# The base model's short-answer instruction: LLaVA-1.5's response-format prompt for single-word answers, which
# LLaVA-NeXT's instruction mix kept (Liu et al., "Improved Baselines with Visual Instruction Tuning", 2023).
BASE_QUESTION = "Which of these categories does this hotel photo belong to?"
SHORT_ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
# The prefilled shape: the assistant turn starts with the seed's sentence and the model only names the label.
PREFILL_TEXT = "this is a photo of"


class InvalidProfile(ValueError):
    """A profile name or a model_profile.json that names no known profile."""


class AnswerShape(StrEnum):
    # The seed's prompt, answered " this is a photo of X." (what training teaches a fine-tune).
    SENTENCE = "sentence"
    # A list of the categories and LLaVA's short-answer instruction, answered " X".
    BARE = "bare"
    # The seed's prompt with the assistant turn prefilled "this is a photo of" (vLLM `continue_final_message`),
    # continued " X.".
    PREFILLED = "prefilled"


class Evidence(StrEnum):
    CONFIDENCE = "confidence"  # exp(sum of the answer's logprobs)
    MARGIN = "margin"  # the answer's probability minus the runner-up label's (classification.margin)


@dataclass(frozen=True)
class RoutingRule:
    """Which answers are stored LABELED; every other one is stored NEEDS_REVIEW with `review_reason`.

    `threshold` None means every answer goes to review: the base profile's default until a margin has been
    calibrated on hand-labelled photos (docs/day-one.md, step 4).
    """

    evidence: Evidence
    threshold: float | None
    profile: str = FINE_TUNE_NAME

    def review_reason(self, prediction: Prediction) -> str | None:
        """Why this answer needs a person (None: it is stored LABELED)."""
        value = prediction.confidence if self.evidence is Evidence.CONFIDENCE else prediction.margin
        if self.threshold is None:
            shown = "unknown" if value is None else f"{value:.3f}"
            return (
                f"every answer of the {self.profile} model goes to review until a {self.evidence} threshold is "
                f"calibrated ({self.evidence} {shown})"
            )
        if value is None:
            return f"the answer carried no {self.evidence} (no logprobs)"
        if value < self.threshold:
            return f"{self.evidence} {value:.3f} is below {self.threshold}"
        return None


@dataclass(frozen=True)
class ModelProfile:
    name: str
    shape: AnswerShape
    add_bos: bool
    describe_labels: bool
    image_token_profile: str | None
    top_logprobs: int
    routing: Evidence
    summary: str

    # -- text ---------------------------------------------------------------------------------------------------

    def prompt(self, taxonomy: Taxonomy) -> str:
        """The user turn's text."""
        if self.shape is AnswerShape.BARE:
            lines = [BASE_QUESTION]
            lines += [f"- {label}{_described(taxonomy, label)}" for label in taxonomy.labels]
            return "\n".join([*lines, SHORT_ANSWER_INSTRUCTION])
        if not self.describe_labels or not taxonomy.descriptions:
            return taxonomy.prompt
        notes = [f"{label}: {text}" for label, text in taxonomy.descriptions]
        return taxonomy.prompt + "\nWhere the labels mean:\n" + "\n".join(notes)

    def completion(self, taxonomy: Taxonomy, label: str) -> str:
        """What the model generates for `label` under this profile (one of the grammar's choices)."""
        if label not in taxonomy.labels:
            raise KeyError(f"{label!r} is not in the taxonomy")
        if self.shape is AnswerShape.SENTENCE:
            return taxonomy.completion(label)
        if self.shape is AnswerShape.BARE:
            # The chat template renders an assistant turn as ' ' + text: the first token is the space-prefixed one.
            return ASSISTANT_TEXT_PREFIX + label
        # After the prefilled "this is a photo of", the continuation carries the separating space itself.
        return " " + label + "."

    def choices(self, taxonomy: Taxonomy) -> list[str]:
        return [self.completion(taxonomy, label) for label in taxonomy.labels]

    def label_of(self, taxonomy: Taxonomy, text: str) -> str:
        """The label an answer text names under this profile; InvalidAnswer if none of the taxonomy's."""
        if self.shape is AnswerShape.SENTENCE:
            return taxonomy.parse_label(text)
        if self.shape is AnswerShape.PREFILLED:
            return taxonomy.parse_label(PREFILL_TEXT + text)
        label = text.strip()
        if label not in taxonomy.labels:
            raise InvalidAnswer(f"answer {text!r} does not name a label of the taxonomy")
        return label

    def messages(self, taxonomy: Taxonomy, image_part: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The conversation sent for one photo; `image_part` is the request's image content part."""
        user = {"role": "user", "content": [{"type": "text", "text": self.prompt(taxonomy)}, dict(image_part)]}
        if self.shape is not AnswerShape.PREFILLED:
            return [user]
        return [user, {"role": "assistant", "content": [{"type": "text", "text": PREFILL_TEXT}]}]

    # -- request / response -------------------------------------------------------------------------------------

    def build_request(
        self, taxonomy: Taxonomy, jpeg: bytes, *, max_tokens: int = MAX_ANSWER_TOKENS
    ) -> dict[str, Any]:
        """The OpenAI-style chat completion body sent to LMI/vLLM for one normalised photo."""
        image_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        body: dict[str, Any] = {
            "messages": self.messages(taxonomy, {"type": "image_url", "image_url": {"url": image_url}}),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
            "structured_outputs": {"choice": self.choices(taxonomy)},
        }
        # vLLM chat-completion extras (vllm/entrypoints/openai/chat_completion/protocol.py), sent only when they
        # differ from vLLM's defaults so the fine-tune's request stays what it always was.
        if self.add_bos:
            body["add_special_tokens"] = True
        if self.shape is AnswerShape.PREFILLED:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    def parse_response(self, taxonomy: Taxonomy, response: Mapping[str, Any] | bytes | str) -> Prediction:
        """(label, confidence, margin) of a chat completion; InvalidAnswer on anything else."""
        if isinstance(response, (bytes, str)):
            try:
                response = json.loads(response)
            except json.JSONDecodeError as error:
                raise InvalidAnswer(f"response is not JSON: {error}") from error
        try:
            choice = response["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as error:
            raise InvalidAnswer(f"response has no choices[0].message.content: {str(response)[:200]}") from error
        if not isinstance(text, str):
            raise InvalidAnswer(f"answer content is {type(text).__name__}, not text")
        label = self.label_of(taxonomy, text)
        logprobs = choice.get("logprobs")
        return Prediction(
            label=label,
            confidence=confidence_of(logprobs),
            margin=answer_margin(logprobs, text, self.choices(taxonomy), self.completion(taxonomy, label)),
        )

    # -- routing ------------------------------------------------------------------------------------------------

    def routing_rule(self, *, confidence_threshold: float, margin_threshold: float | None) -> RoutingRule:
        """This profile's rule with the deployment's thresholds (upload.confidence_threshold for fine-tunes,
        upload.base_margin_threshold for the base profiles)."""
        if self.routing is Evidence.CONFIDENCE:
            return RoutingRule(Evidence.CONFIDENCE, confidence_threshold, self.name)
        return RoutingRule(Evidence.MARGIN, margin_threshold, self.name)

    # -- the record next to the weights -------------------------------------------------------------------------

    def record(self, **provenance: Any) -> bytes:
        """model_profile.json's content for a model served with this profile (plus where it came from, e.g. the
        staging tool's repository and commit; readers look at `profile` only)."""
        data: dict[str, Any] = {"profile": self.name, "summary": self.summary}
        if self.image_token_profile is not None:
            data["image_token_profile"] = self.image_token_profile
        return (json.dumps({**data, **provenance}, indent=2) + "\n").encode()


def _described(taxonomy: Taxonomy, label: str) -> str:
    description = dict(taxonomy.descriptions).get(label)
    return f": {description}" if description else ""


FINE_TUNE = ModelProfile(
    name=FINE_TUNE_NAME,
    shape=AnswerShape.SENTENCE,
    add_bos=False,
    describe_labels=False,
    image_token_profile=None,
    top_logprobs=1,
    routing=Evidence.CONFIDENCE,
    summary="a fine-tune: the seed's prompt, answered 'this is a photo of X.' as training taught it",
)
BASE = ModelProfile(
    name=BASE_NAME,
    shape=AnswerShape.BARE,
    add_bos=True,
    describe_labels=True,
    image_token_profile="stock",
    top_logprobs=5,
    routing=Evidence.MARGIN,
    summary="the base model: the categories listed with descriptions, a short-answer instruction, the bare label",
)
BASE_PREFILLED = ModelProfile(
    name=BASE_PREFILLED_NAME,
    shape=AnswerShape.PREFILLED,
    add_bos=True,
    describe_labels=True,
    image_token_profile="stock",
    top_logprobs=5,
    routing=Evidence.MARGIN,
    summary="the base model: the seed's prompt with descriptions, the answer prefilled 'this is a photo of'",
)
PROFILES: dict[str, ModelProfile] = {p.name: p for p in (FINE_TUNE, BASE, BASE_PREFILLED)}


def profile_named(name: str) -> ModelProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidProfile(f"unknown model profile {name!r}; known: {', '.join(PROFILES)}") from None


def profile_from_record(data: bytes | str | None) -> ModelProfile:
    """The profile a model_profile.json names; None (no file) is a fine-tune."""
    if data is None:
        return FINE_TUNE
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidProfile(f"{PROFILE_FILE} is not JSON: {error}") from error
    if not isinstance(record, dict) or not isinstance(record.get("profile"), str):
        raise InvalidProfile(f'{PROFILE_FILE} must be an object with a "profile" name')
    return profile_named(record["profile"])


_S3_PREFIX_RE = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>(?:.+/)?)$")
# (bucket, key) -> the object's bytes, or None when it does not exist
RecordReader = Callable[[str, str], bytes | None]


def profile_record_location(model_uri: str) -> tuple[str, str] | None:
    """(bucket, key) of model_profile.json for a model directory URI `s3://bucket/prefix/`; None if not one."""
    match = _S3_PREFIX_RE.match(model_uri)
    if match is None:
        return None
    return match.group("bucket"), match.group("key") + PROFILE_FILE


def resolve_profile(model: str | Path, *, read: RecordReader | None = None) -> ModelProfile:
    """The profile a model is served with: the one reader of the record every consumer calls.

    `model` is what the caller knows the model by: a local model directory (the evaluation, the labelling job),
    or the model id the labels record, i.e. the S3 prefix the endpoint serves (`s3://bucket/prefix/`), read
    through `read` (the Lambda's S3 reader). Anything else (a model id that names no directory, e.g. the demo's
    or "none") is a fine-tune, as is a directory without the file. InvalidProfile when the file names no profile.
    """
    location = profile_record_location(str(model))
    if location is not None:
        if read is None:
            raise ValueError(f"{model} is an S3 prefix: pass read= to fetch its {PROFILE_FILE}")
        return profile_from_record(read(*location))
    path = Path(model)
    record = path / PROFILE_FILE
    if path.is_dir() and record.is_file():
        return profile_from_record(record.read_bytes())
    return FINE_TUNE


__all__ = [
    "BASE",
    "BASE_PREFILLED",
    "FINE_TUNE",
    "PROFILES",
    "PROFILE_FILE",
    "AnswerShape",
    "Evidence",
    "InvalidProfile",
    "ModelProfile",
    "RoutingRule",
    "profile_from_record",
    "profile_named",
    "profile_record_location",
    "resolve_profile",
]
