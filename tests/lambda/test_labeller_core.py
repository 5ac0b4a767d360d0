"""labeller_core without AWS: configuration, and decisions taken before any write."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from labeller_core import (
    Labeller,
    LabellerConfig,
    Status,
    StoredObject,
    TransientFault,
    format_last_modified,
)
from labeller_inputs import ObjectRef
from labeller_testkit import MODEL_ID, labeller_config, photo, vllm_answer

from classification.contract import Taxonomy
from classification.labeller_environment import DEFAULT_HOTEL_ID_PATTERN, DEFAULT_UPLOAD_PREFIX, ConfigError

TAXONOMY = Taxonomy.load()
MODIFIED = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class MemoryObjects:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.reads = 0

    def get(self, bucket: str, key: str, *, if_match: str | None, max_bytes: int) -> StoredObject:
        self.reads += 1
        body = self.objects[key]
        return StoredObject(
            body=body if len(body) <= max_bytes else None,
            size=len(body),
            etag="etag-1",
            version_id=None,
            last_modified=MODIFIED,
        )


class ScriptedEndpoint:
    def __init__(self, *replies: bytes | Exception) -> None:
        self.replies = list(replies)
        self.calls = 0

    def invoke(self, body: bytes) -> bytes:
        self.calls += 1
        json.loads(body)  # the labeller always sends JSON
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


class MemoryLabels:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def get(self, image_uri: str) -> Mapping[str, Any] | None:
        return self.items.get(image_uri)

    def put_result(self, item: Mapping[str, Any], *, final_statuses: tuple[str, ...]) -> bool:
        self.items[item["image_uri"]] = dict(item)
        return True

    def put_missing(self, item: Mapping[str, Any]) -> bool:
        return self.items.setdefault(item["image_uri"], dict(item)) is not None


def make_labeller(
    objects: dict[str, bytes],
    *replies: bytes | Exception,
    model_id: Callable[[], str] | None = None,
    **config: Any,
) -> tuple[Labeller, Any, Any]:
    endpoint = ScriptedEndpoint(*replies)
    labels = MemoryLabels()
    labeller = Labeller(
        LabellerConfig(model_id=MODEL_ID, taxonomy=TAXONOMY, **config),
        objects=MemoryObjects(objects),
        endpoint=endpoint,
        labels=labels,
        clock=lambda: MODIFIED,
        model_id=model_id,
    )
    return labeller, endpoint, labels


def test_the_config_carries_the_parsed_environment_and_finds_the_taxonomy_under_the_task_root(
    tmp_path: Path,
) -> None:
    # Given the variables a realtime labeller cannot run without
    base = {"TABLE_NAME": "photo-labels", "ENDPOINT_NAME": "photo-labeler", "MODEL_ID": MODEL_ID}
    # Then unset optional ones take the labeller's defaults
    config = labeller_config(base)
    assert (config.model_id, config.upload_prefix, config.hotel_id_pattern.pattern) == (
        MODEL_ID,
        DEFAULT_UPLOAD_PREFIX,
        DEFAULT_HOTEL_ID_PATTERN,
    )
    assert (config.base_margin_threshold, config.model_parameter_name, config.taxonomy) == (None, None, TAXONOMY)
    # and set ones arrive typed; an empty prefix is a prefix (the whole bucket), an empty registry name is unset
    assert labeller_config({**base, "BASE_MARGIN_THRESHOLD": "0.4"}).base_margin_threshold == 0.4
    assert labeller_config({**base, "UPLOAD_PREFIX": ""}).upload_prefix == ""
    assert labeller_config({**base, "MODEL_PARAMETER_NAME": ""}).model_parameter_name is None
    registry = "/hotel-photos/model/current"
    assert labeller_config({**base, "MODEL_PARAMETER_NAME": registry}).model_parameter_name == registry
    arn = "arn:aws:ssm:us-east-1:123456789012:parameter/hotel-photos/model/current"
    assert labeller_config({**base, "MODEL_PARAMETER_NAME": arn}).model_parameter_name == arn
    # A relative TAXONOMY_FILE is under the task root the caller names, else the runtime's LAMBDA_TASK_ROOT
    (tmp_path / "classification").mkdir()
    (tmp_path / "classification" / "mine.json").write_text('{"labels": ["Room", "Pool"]}', encoding="utf-8")
    mine = {**base, "TAXONOMY_FILE": "classification/mine.json"}
    assert labeller_config(mine, task_root=tmp_path).taxonomy.labels == ("Room", "Pool")
    assert labeller_config({**mine, "LAMBDA_TASK_ROOT": str(tmp_path)}).taxonomy.labels == ("Room", "Pool")
    # A bad variable never reaches a config: the contract refuses it, naming it
    # (every message: tests/classification/test_labeller_environment.py)
    for variable, value in (("CONFIDENCE_THRESHOLD", "1.5"), ("HOTEL_ID_PATTERN", r"^uploads/([^/]+)/")):
        with pytest.raises(ConfigError, match=variable):
            labeller_config({**base, variable: value})


def test_confident_answer_is_labeled_and_a_weak_one_needs_review() -> None:
    labeller, _, labels = make_labeller(
        {"uploads/h1/a.jpg": photo((0, 0, 0)), "uploads/h1/b.jpg": photo((0, 0, 0))},
        json.dumps(vllm_answer("Pool", logprob=-0.1)).encode(),  # p = 0.90
        json.dumps(vllm_answer("Bar", logprob=-2.0)).encode(),  # p = 0.14
        confidence_threshold=0.6,
    )
    strong = labeller.process(ObjectRef("hotel-photos", "uploads/h1/a.jpg", "etag-1"))
    weak = labeller.process(ObjectRef("hotel-photos", "uploads/h1/b.jpg", "etag-1"))
    assert (strong.status, strong.label) == (Status.LABELED, "Pool")
    assert (weak.status, weak.label) == (Status.NEEDS_REVIEW, "Bar")
    assert "below 0.6" in (weak.reason or "")
    item = labels.items["s3://hotel-photos/uploads/h1/a.jpg"]
    assert item["hotel_id"] == "h1" and item["model"] == MODEL_ID and item["source_last_modified"].endswith("Z")


def test_an_answer_without_logprobs_needs_review() -> None:
    answer = vllm_answer("Pool")
    answer["choices"][0]["logprobs"] = None
    labeller, _, _ = make_labeller({"uploads/h/a.jpg": photo((0, 0, 0))}, json.dumps(answer).encode())
    outcome = labeller.process(ObjectRef("hotel-photos", "uploads/h/a.jpg"))
    assert outcome.status == Status.NEEDS_REVIEW and "no confidence" in (outcome.reason or "")


def test_an_answer_outside_the_taxonomy_is_retried_not_recorded() -> None:
    bad = json.dumps(vllm_answer("Kitchen")).encode()
    labeller, _, labels = make_labeller({"uploads/h/a.jpg": photo((0, 0, 0))}, bad)
    with pytest.raises(TransientFault, match="outside the taxonomy"):
        labeller.process(ObjectRef("hotel-photos", "uploads/h/a.jpg"))
    assert labels.items == {}


def test_an_oversized_object_is_rejected_without_calling_the_endpoint() -> None:
    labeller, endpoint, _ = make_labeller({"uploads/h/big.jpg": photo((0, 0, 0))}, max_object_bytes=100)
    outcome = labeller.process(ObjectRef("hotel-photos", "uploads/h/big.jpg"))
    assert outcome.status == Status.REJECTED and "larger than the 100-byte limit" in (outcome.reason or "")
    assert endpoint.calls == 0


def test_keys_outside_the_upload_prefix_are_skipped_without_any_read() -> None:
    labeller, endpoint, labels = make_labeller({})
    outcome = labeller.process(ObjectRef("hotel-photos", "thumbnails/h/a.jpg", "e"))
    assert outcome.status == Status.SKIPPED and labels.items == {} and endpoint.calls == 0


def test_folder_placeholders_are_skipped_not_rejected() -> None:
    # Given the empty object the S3 console writes for "Create folder"
    labeller, endpoint, labels = make_labeller({"uploads/h/": b""})
    # When it is delivered (upload notification or backfill listing)
    outcome = labeller.process(ObjectRef("hotel-photos", "uploads/h/", "e"))
    # Then it leaves no item (no REJECTED noise in the table) and costs no read
    assert outcome.status == Status.SKIPPED and "folder" in (outcome.reason or "")
    assert labels.items == {} and endpoint.calls == 0


def test_reclassify_relabels_only_results_of_another_model() -> None:
    answer = json.dumps(vllm_answer("Lobby")).encode()
    labeller, endpoint, labels = make_labeller({"uploads/h/a.jpg": photo((0, 0, 0))}, answer, answer)
    ref = ObjectRef("hotel-photos", "uploads/h/a.jpg", "etag-1")
    labeller.process(ref)
    # same model: even reclassify skips it, without a download
    assert labeller.process(ref, reclassify=True).status == Status.SKIPPED
    labels.items[ref.image_uri]["model"] = "llava-next-hotel-v0"
    assert labeller.process(ref).status == Status.SKIPPED  # an ordinary redelivery keeps the old result
    assert labeller.process(ref, reclassify=True).status == Status.LABELED
    assert labels.items[ref.image_uri]["model"] == MODEL_ID and endpoint.calls == 2


def test_the_model_is_asked_once_per_photo_so_a_new_registration_applies_to_the_next_photo() -> None:
    # Given a model registry that names v1, then v2 after a rollout
    registry = ["llava-next-hotel-v1"]
    asked: list[str] = []

    def current_model() -> str:
        asked.append(registry[0])
        return registry[0]

    answer = json.dumps(vllm_answer("Lobby")).encode()
    labeller, endpoint, labels = make_labeller(
        {"uploads/h/a.jpg": photo((0, 0, 0))}, answer, answer, model_id=current_model
    )
    ref = ObjectRef("hotel-photos", "uploads/h/a.jpg", "etag-1")

    # When the photo is labelled under v1, then reclassified before and after the registry moves to v2
    assert labeller.process(ref).model == "llava-next-hotel-v1"
    assert labeller.process(ref, reclassify=True).status == Status.SKIPPED  # same model: nothing to redo
    registry[0] = "llava-next-hotel-v2"
    relabeled = labeller.process(ref, reclassify=True)

    # Then the item names the model that produced it, and each photo asked for the model exactly once
    assert (relabeled.status, relabeled.model) == (Status.LABELED, "llava-next-hotel-v2")
    assert labels.items[ref.image_uri]["model"] == "llava-next-hotel-v2" and endpoint.calls == 2
    assert len(asked) == 3


def test_a_registry_fault_fails_the_photo_before_anything_is_read_or_written() -> None:
    def unavailable() -> str:
        raise TransientFault("SSM GetParameter failed: ThrottlingException")

    labeller, endpoint, labels = make_labeller({"uploads/h/a.jpg": photo((0, 0, 0))}, model_id=unavailable)
    with pytest.raises(TransientFault, match="ThrottlingException"):
        labeller.process(ObjectRef("hotel-photos", "uploads/h/a.jpg", "etag-1"))
    assert labels.items == {} and endpoint.calls == 0


def test_last_modified_is_fixed_width_so_string_order_is_time_order() -> None:
    early = format_last_modified(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = format_last_modified(datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC))
    assert early == "2026-01-02T03:04:05.000000Z" and early < late and len(early) == len(late)
