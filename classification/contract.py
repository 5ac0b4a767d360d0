"""The classification contract: taxonomy, prompt, endpoint request and answer parser.

Training (dataset rows), serving (the request the Lambda sends, the local backend) and evaluation all build
their text from this module, so the prompt the model learned is byte-identical to the one it is asked in
production. It imports only the standard library: the Lambda bundles it as is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classification.model_profile import ModelProfile

DEFAULT_TAXONOMY_PATH = Path(__file__).with_name("taxonomy.json")
# Below it a label is stored NEEDS_REVIEW: the app's upload.confidence_threshold default
# (stacks/config/app_config.py) and the labeller's fallback when CONFIDENCE_THRESHOLD is unset.
DEFAULT_CONFIDENCE_THRESHOLD = 0.8

# The seed's prompt: a fill-in-the-blank phrased like CLIP's "this is a photo of {}" (the seed measured ~5 %
# better accuracy with this phrasing than with a free question).
PROMPT_TEMPLATE = (
    "Fill in the blank: this is a photo of a {{}}, you should select the appropriate categories from the "
    "provided labels: [{labels}]"
)
ANSWER_TEMPLATE = "this is a photo of {label}."
# What the chat template puts between the prompt and the answer text. TRL's LLaVA-NeXT template (the real model's,
# trl.chat_template_utils.llava_next_chat_template) renders an assistant turn as ' ' + text + '</s> ', so the
# model learns to start every answer with the space-prefixed token (Mistral's "▁this"); the seed's vLLM answer is
# " this is a photo of Terrace/Patio.". A choice without it would make vLLM's grammar mask the trained token.
ASSISTANT_TEXT_PREFIX = " "

# The longest default answer is ~14 Mistral tokens; 32 leaves room for a user taxonomy with longer names
# while bounding the decode time of a misbehaving model.
MAX_ANSWER_TOKENS = 32

_ANSWER_RE = re.compile(r"^this is a photo of (?P<label>.+?)\.?$")
_FORBIDDEN_IN_LABEL = (",", "[", "]", "\n", "\r", "{", "}")
# A description is one line of the base model's prompt (classification/model_profile.py); this keeps 26 of them
# a few hundred tokens, well inside serving.properties' max_model_len beside ~2.9k image tokens.
MAX_DESCRIPTION_CHARS = 160


class InvalidAnswer(ValueError):
    """The endpoint's response does not name exactly one label of the taxonomy."""


class InvalidTaxonomy(ValueError):
    """The taxonomy file cannot define a usable label set."""


@dataclass(frozen=True)
class Prediction:
    label: str
    # Probability of the whole answer as the endpoint decodes it: the product of its token probabilities after
    # vLLM's choice-grammar mask (renormalised over the tokens the grammar allows); None without logprobs.
    confidence: float | None
    # The answer's probability minus a bound on the runner-up label's (classification/margin.py), within [-1, 1];
    # None without logprobs.
    margin: float | None = None


@dataclass(frozen=True)
class Taxonomy:
    labels: tuple[str, ...]
    # (label, short description) of the classes a base model cannot tell apart from their names alone; only the
    # base model profiles put them in the prompt (a fine-tune learnt the classes from examples).
    descriptions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise InvalidTaxonomy(f"a taxonomy needs at least 2 labels, got {len(self.labels)}")
        seen: set[str] = set()
        for label in self.labels:
            if not isinstance(label, str) or not label or label != label.strip():
                raise InvalidTaxonomy(f"label {label!r} must be a non-empty string without outer spaces")
            if any(ch in label for ch in _FORBIDDEN_IN_LABEL):
                raise InvalidTaxonomy(
                    f"label {label!r} contains one of {_FORBIDDEN_IN_LABEL!r}, which the prompt's list uses"
                )
            if label.casefold() in seen:
                raise InvalidTaxonomy(f"label {label!r} appears twice (labels are compared case-insensitively)")
            seen.add(label.casefold())
        for label, text in self.descriptions:
            if label not in self.labels:
                raise InvalidTaxonomy(f"description for {label!r}, which is not a label of the taxonomy")
            if not isinstance(text, str) or not text.strip() or "\n" in text or len(text) > MAX_DESCRIPTION_CHARS:
                raise InvalidTaxonomy(
                    f"the description of {label!r} must be one line of 1..{MAX_DESCRIPTION_CHARS} characters"
                )

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TAXONOMY_PATH) -> Taxonomy:
        """Read a taxonomy file: JSON `{"labels": [...], "descriptions"?: {label: text}}` or a bare JSON list."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidTaxonomy(f"cannot read taxonomy file {path}: {error}") from error
        labels = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(labels, list):
            raise InvalidTaxonomy(f"taxonomy file {path} must hold a list of labels under 'labels'")
        descriptions = data.get("descriptions", {}) if isinstance(data, dict) else {}
        if not isinstance(descriptions, dict):
            raise InvalidTaxonomy(f"taxonomy file {path}: 'descriptions' must map labels to text")
        return cls(tuple(labels), tuple(descriptions.items()))

    def subset(self, count: int) -> Taxonomy:
        """The first `count` labels with their descriptions (the demo's smaller taxonomies)."""
        labels = self.labels[:count]
        return Taxonomy(labels, tuple((label, text) for label, text in self.descriptions if label in labels))

    # -- text -------------------------------------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        return PROMPT_TEMPLATE.format(labels=",".join(self.labels))

    def answer(self, label: str) -> str:
        """The training target: the assistant turn's text in a dataset row (the chat template adds the space)."""
        if label not in self.labels:
            raise KeyError(f"{label!r} is not in the taxonomy")
        return ANSWER_TEMPLATE.format(label=label)

    def completion(self, label: str) -> str:
        """The text the model generates after the prompt for `label`, up to (not including) the EOS token.

        This is `answer(label)` as the chat template renders it in the assistant turn (with the leading space),
        so constrained decoding allows exactly the tokens training taught.
        """
        return ASSISTANT_TEXT_PREFIX + self.answer(label)

    @property
    def choices(self) -> list[str]:
        """Every allowed completion, for vLLM's structured-output `choice` constraint (leading space included)."""
        return [self.completion(label) for label in self.labels]

    def training_messages(self, label: str) -> list[dict[str, Any]]:
        """One dataset row's `messages` in the seed's format: prompt text, then the image, then the answer."""
        return [
            {"role": "user", "content": [{"type": "text", "text": self.prompt}, {"type": "image"}]},
            {"role": "assistant", "content": [{"type": "text", "text": self.answer(label)}]},
        ]

    def inference_messages(self) -> list[dict[str, Any]]:
        """The user turn alone, as a processor's chat template takes it for generation."""
        return self.training_messages(self.labels[0])[:1]

    # -- endpoint request / response --------------------------------------------------------------------------

    def build_request(
        self, jpeg: bytes, *, max_tokens: int = MAX_ANSWER_TOKENS, profile: ModelProfile | None = None
    ) -> dict[str, Any]:
        """The OpenAI-style chat completion body sent to LMI (async mode passes it straight to vLLM).

        `profile` is the served model's (classification/model_profile.py); None: a fine-tune's, the seed's format.
        """
        return _profile(profile).build_request(self, jpeg, max_tokens=max_tokens)

    def parse_label(self, text: str) -> str:
        """The label an answer text names, with or without the leading space; InvalidAnswer if none of ours."""
        match = _ANSWER_RE.match(text.strip())
        label = match.group("label").strip() if match else None
        if label not in self.labels:
            raise InvalidAnswer(f"answer {text!r} does not name a label of the taxonomy")
        return label

    def parse_response(
        self, response: Mapping[str, Any] | bytes | str, *, profile: ModelProfile | None = None
    ) -> Prediction:
        """Turn a chat completion response into (label, confidence, margin); InvalidAnswer on anything else."""
        return _profile(profile).parse_response(self, response)


def _profile(profile: ModelProfile | None) -> ModelProfile:
    # Imported here: model_profile builds on this module's constants and parser.
    from classification.model_profile import FINE_TUNE

    return FINE_TUNE if profile is None else profile


def confidence_of(logprobs: Any) -> float | None:
    """exp(sum of the answer's token logprobs), the Lambda's confidence; None without usable logprobs."""
    if not isinstance(logprobs, Mapping):
        return None
    tokens: Sequence[Any] = logprobs.get("content") or []
    values = [t.get("logprob") for t in tokens if isinstance(t, Mapping)]
    if not values or not all(isinstance(v, (int, float)) and v <= 0 for v in values):
        return None
    return math.exp(sum(values))
