"""classification.model_profile: one request, answer shape and routing rule per served model, and its record."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from classification.contract import InvalidAnswer, InvalidTaxonomy, Prediction, Taxonomy
from classification.model_profile import (
    BASE,
    BASE_PREFILLED,
    FINE_TUNE,
    PROFILE_FILE,
    Evidence,
    InvalidProfile,
    RoutingRule,
    profile_from_record,
    profile_record_location,
    resolve_profile,
)

DATA = Path(__file__).resolve().parent / "data"
LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
# The bytes the fixtures were recorded from (before model profiles existed, at bcb4b5c).
FIXTURE_JPEG = bytes(range(256)) * 3


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load()


# -- the fine-tune profile: today's bytes ---------------------------------------------------------------------


def test_the_fine_tune_request_is_byte_identical_to_the_one_sent_before_profiles_existed(
    taxonomy: Taxonomy,
) -> None:
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    from labeller_core import encode_request

    # Given the exact body the Lambda sent before this change (recorded with its own encode_request)
    recorded = (DATA / "fine_tune_request.bin").read_bytes()

    # Then the fine-tune profile, named or defaulted, sends the same bytes
    assert encode_request(taxonomy, FIXTURE_JPEG) == recorded
    assert encode_request(taxonomy, FIXTURE_JPEG, FINE_TUNE) == recorded
    assert json.loads(recorded) == taxonomy.build_request(FIXTURE_JPEG, profile=FINE_TUNE)


def test_the_training_rows_are_byte_identical_to_the_ones_written_before_profiles_existed(
    taxonomy: Taxonomy,
) -> None:
    recorded = (DATA / "fine_tune_training_messages.bin").read_bytes()
    rows = [taxonomy.training_messages(label) for label in taxonomy.labels]
    assert json.dumps(rows, separators=(",", ":")).encode() == recorded
    # the descriptions the base profile uses never reach a fine-tune's prompt
    assert taxonomy.descriptions and "Where the labels mean" not in FINE_TUNE.prompt(taxonomy)
    assert FINE_TUNE.prompt(taxonomy) == taxonomy.prompt


# -- the base profiles ------------------------------------------------------------------------------------------


def test_the_base_request_lists_the_labels_with_descriptions_and_asks_for_the_bare_label_with_bos(
    taxonomy: Taxonomy,
) -> None:
    # When the base profile's request is built
    body = taxonomy.build_request(FIXTURE_JPEG, profile=BASE)

    # Then one user turn: the question, one line per label (descriptions for the vague ones), LLaVA's
    # short-answer instruction, then the photo
    (message,) = body["messages"]
    text, image = message["content"]
    lines = text["text"].splitlines()
    assert lines[0] == "Which of these categories does this hotel photo belong to?"
    assert lines[-1] == "Answer the question using a single word or phrase."
    assert "- Pool" in lines and "- Other: none of the other categories fits" in lines
    assert base64.b64decode(image["image_url"]["url"].split(",", 1)[1]) == FIXTURE_JPEG
    # the grammar allows the bare labels, space first as the chat template renders an assistant turn
    assert body["structured_outputs"] == {"choice": [" " + label for label in taxonomy.labels]}
    # BOS as the base model always saw it, and alternatives for the margin
    assert body["add_special_tokens"] is True and body["top_logprobs"] == 5 and body["logprobs"] is True
    assert "continue_final_message" not in body


def test_the_prefilled_base_request_continues_the_seeds_sentence(taxonomy: Taxonomy) -> None:
    body = taxonomy.build_request(FIXTURE_JPEG, profile=BASE_PREFILLED)
    user, assistant = body["messages"]
    assert user["content"][0]["text"].startswith(taxonomy.prompt + "\nWhere the labels mean:\n")
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": "this is a photo of"}]}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["structured_outputs"]["choice"][:2] == [" Hallway.", " Sauna."]


@pytest.mark.parametrize(
    ("profile", "text", "label"),
    [
        (FINE_TUNE, " this is a photo of Spa.", "Spa"),
        (BASE, " Hot springs", "Hot springs"),
        (BASE, "Staircase/Elevator", "Staircase/Elevator"),
        (BASE_PREFILLED, " Terrace/Patio.", "Terrace/Patio"),
    ],
)
def test_each_profile_reads_its_own_answer_shape(
    taxonomy: Taxonomy, profile: object, text: str, label: str
) -> None:
    assert profile.label_of(taxonomy, text) == label  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("profile", "text"),
    [(BASE, " this is a photo of Spa."), (BASE, " spa"), (FINE_TUNE, " Spa"), (BASE_PREFILLED, " Kitchen.")],
)
def test_an_answer_in_another_profiles_shape_is_refused(taxonomy: Taxonomy, profile: object, text: str) -> None:
    with pytest.raises(InvalidAnswer):
        profile.label_of(taxonomy, text)  # type: ignore[attr-defined]


def test_descriptions_must_name_labels_and_fit_on_one_line() -> None:
    with pytest.raises(InvalidTaxonomy, match="not a label"):
        Taxonomy(("Pool", "Room"), (("Kitchen", "a kitchen"),))
    with pytest.raises(InvalidTaxonomy, match="one line"):
        Taxonomy(("Pool", "Room"), (("Pool", "water\nand tiles"),))
    subset = Taxonomy.load().subset(3)
    assert subset.labels == ("Hallway", "Sauna", "Surrounding environment and attractions")
    assert [label for label, _ in subset.descriptions] == ["Sauna", "Surrounding environment and attractions"]


# -- routing --------------------------------------------------------------------------------------------------


def test_the_fine_tune_routes_on_confidence_with_todays_reasons() -> None:
    rule = FINE_TUNE.routing_rule(confidence_threshold=0.8, margin_threshold=0.3)
    assert rule == RoutingRule(Evidence.CONFIDENCE, 0.8, "fine-tune")
    assert rule.review_reason(Prediction("Pool", 0.9, 0.0)) is None  # the margin plays no part
    assert rule.review_reason(Prediction("Pool", 0.5, 0.9)) == "confidence 0.500 is below 0.8"
    assert rule.review_reason(Prediction("Pool", None)) == "the answer carried no confidence (no logprobs)"


def test_the_base_routes_on_margin_and_sends_everything_to_review_until_one_is_calibrated() -> None:
    calibrated = BASE.routing_rule(confidence_threshold=0.8, margin_threshold=0.3)
    assert calibrated.review_reason(Prediction("Pool", 0.2, 0.35)) is None  # a low confidence plays no part
    assert calibrated.review_reason(Prediction("Pool", 0.9, 0.1)) == "margin 0.100 is below 0.3"
    assert calibrated.review_reason(Prediction("Pool", 0.9, None)) == "the answer carried no margin (no logprobs)"

    uncalibrated = BASE.routing_rule(confidence_threshold=0.8, margin_threshold=None)
    reason = uncalibrated.review_reason(Prediction("Pool", 0.99, 0.98))
    assert reason == (
        "every answer of the base model goes to review until a margin threshold is calibrated (margin 0.980)"
    )


# -- the record next to the weights ---------------------------------------------------------------------------


def test_a_model_directory_records_its_profile_and_one_without_a_record_is_a_fine_tune(tmp_path: Path) -> None:
    assert resolve_profile(tmp_path) is FINE_TUNE
    (tmp_path / PROFILE_FILE).write_bytes(BASE.record())
    assert resolve_profile(tmp_path) is BASE
    assert json.loads(BASE.record()) == {
        "profile": "base",
        "summary": BASE.summary,
        "image_token_profile": "stock",
    }
    assert resolve_profile("tiny-llava-next-demo") is FINE_TUNE  # a model id that names no directory


def test_an_s3_model_is_resolved_through_the_reader_the_caller_injects() -> None:
    reads: list[tuple[str, str]] = []

    def read(bucket: str, key: str) -> bytes | None:
        reads.append((bucket, key))
        return BASE_PREFILLED.record() if key.startswith("base-models/") else None

    assert resolve_profile("s3://training/base-models/llava/abc/", read=read) is BASE_PREFILLED
    assert resolve_profile("s3://training/models/run-1/", read=read) is FINE_TUNE
    assert reads == [
        ("training", "base-models/llava/abc/model_profile.json"),
        ("training", "models/run-1/model_profile.json"),
    ]
    assert profile_record_location("s3://bucket/") == ("bucket", "model_profile.json")
    assert profile_record_location("none") is None
    with pytest.raises(ValueError, match="pass read="):
        resolve_profile("s3://training/models/run-1/")


@pytest.mark.parametrize(
    ("record", "message"),
    [(b"{", "not JSON"), (b"[]", "must be an object"), (b'{"profile": "tuned"}', "unknown model profile")],
)
def test_a_record_that_names_no_profile_is_refused(record: bytes, message: str) -> None:
    with pytest.raises(InvalidProfile, match=message):
        profile_from_record(record)
