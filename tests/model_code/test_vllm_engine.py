"""The real serving engine (vLLM's CPU build) serving the session's trained tiny model, as LMI would.

One engine for the whole session (tests/conftest.py `vllm_server`); every test here sends real requests to it.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from serving_testkit import jpeg, post_json, runtime_client, send
from training_testkit import COLOURS, SESSION_ENDPOINT_NAME

from classification.contract import Taxonomy

pytestmark = pytest.mark.slow


# -- the Lambda's side, in memory (the endpoint is the only real boundary here) --------------------------------


@dataclass
class _Objects:
    body: bytes

    def get(self, bucket: str, key: str, *, if_match: str | None, max_bytes: int) -> Any:
        from labeller_core import StoredObject

        return StoredObject(self.body, len(self.body), "etag-1", None, datetime(2026, 1, 1, tzinfo=UTC))


@dataclass
class _Labels:
    items: list[Mapping[str, Any]] = field(default_factory=list)

    def get(self, image_uri: str) -> Mapping[str, Any] | None:
        return None

    def put_result(self, item: Mapping[str, Any], *, final_statuses: tuple[str, ...]) -> bool:
        self.items.append(item)
        return True

    def put_missing(self, item: Mapping[str, Any]) -> bool:
        raise AssertionError("the object exists")


@dataclass
class _RecordingEndpoint:
    """The container's /invocations over HTTP, keeping the exact bytes sent and received."""

    url: str
    sent: list[bytes] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def invoke(self, body: bytes) -> bytes:
        status, answer = send(self.url, body)
        assert status == 200, answer
        self.sent.append(body)
        self.received.append(answer)
        return json.dumps(answer).encode()


def test_the_lambdas_exact_request_gets_a_taxonomy_label_with_logprobs(
    vllm_server: Any, taxonomy: Taxonomy
) -> None:
    from labeller_core import Labeller, LabellerConfig
    from labeller_inputs import ObjectRef

    # Given the Lambda's own labeller, its endpoint pointed at the engine's /invocations, and a new photo
    endpoint = _RecordingEndpoint(vllm_server.base_url + "/invocations")
    labels = _Labels()
    labeller = Labeller(
        LabellerConfig(model_id="session-model", taxonomy=taxonomy),
        objects=_Objects(jpeg(COLOURS["Pool"], size=(800, 600))),
        endpoint=endpoint,
        labels=labels,
    )

    # When it processes the upload
    outcome = labeller.process(ObjectRef("bucket", "uploads/hotel-1/pool.jpg"))

    # Then the engine answered the request the Lambda built with one of the taxonomy's answers, with logprobs
    request = json.loads(endpoint.sent[0])
    assert request["structured_outputs"] == {"choice": taxonomy.choices}
    assert request["logprobs"] is True and request["messages"][0]["content"][1]["type"] == "image_url"
    choice = endpoint.received[0]["choices"][0]
    assert choice["message"]["content"] in taxonomy.choices
    tokens = choice["logprobs"]["content"]
    assert tokens and all(token["logprob"] <= 0 for token in tokens)
    assert endpoint.received[0]["usage"]["prompt_tokens"] > 0
    # ... and the labeller recorded that label with the answer's probability as its confidence
    assert outcome.status in ("LABELED", "NEEDS_REVIEW")
    item = labels.items[0]
    assert item["label"] == taxonomy.parse_label(choice["message"]["content"])
    assert float(item["confidence"]) == pytest.approx(math.exp(sum(t["logprob"] for t in tokens)), rel=1e-6)


@pytest.mark.parametrize("profile_name", ["fine-tune", "base", "base-prefilled"])
def test_each_profiles_answer_carries_the_evidence_the_margin_is_computed_from(
    vllm_server: Any, taxonomy: Taxonomy, profile_name: str
) -> None:
    from labeller_core import Labeller, LabellerConfig
    from labeller_inputs import ObjectRef

    from classification.margin import answer_margin
    from classification.model_profile import profile_named

    profile = profile_named(profile_name)

    # Given the Lambda's labeller serving a model of this profile, its endpoint the engine's /invocations
    endpoint = _RecordingEndpoint(vllm_server.base_url + "/invocations")
    labels = _Labels()
    labeller = Labeller(
        LabellerConfig(model_id="session-model", taxonomy=taxonomy),
        objects=_Objects(jpeg(COLOURS["Room"], size=(640, 480))),
        endpoint=endpoint,
        labels=labels,
        profiles=lambda model: profile,
    )

    # When it labels a photo
    labeller.process(ObjectRef("bucket", "uploads/hotel-1/room.jpg"))

    # Then the engine got the profile's request and answered one of its choices, with the profile's number of
    # alternatives per token computed after the grammar's mask (allowed ones first, masked ones at -9999.0)
    request = json.loads(endpoint.sent[0])
    assert request == taxonomy.build_request(b"", profile=profile) | {"messages": request["messages"]}
    choice = endpoint.received[0]["choices"][0]
    assert choice["message"]["content"] in profile.choices(taxonomy)
    steps = choice["logprobs"]["content"]
    assert all(len(step["top_logprobs"]) == profile.top_logprobs for step in steps)
    assert all(step["top_logprobs"][0]["token"] == step["token"] for step in steps)
    # the token texts spell the answer (the stop token after it), so alternatives map onto labels
    spelled = "".join(step["token"] for step in steps[:-1])
    assert spelled == choice["message"]["content"]
    # and the item stores the margin the parser reads from the response, never above the confidence
    item = labels.items[0]
    prediction = taxonomy.parse_response(endpoint.received[0], profile=profile)
    assert float(item["margin"]) == pytest.approx(prediction.margin, abs=1e-6)
    assert prediction.margin is not None and prediction.confidence is not None
    assert -1 <= prediction.margin <= prediction.confidence
    # With every alternative listed the margin can only be as large or larger: the short list is a safe bound
    full = post_json(vllm_server.base_url + "/invocations", request | {"top_logprobs": 20})["choices"][0]
    assert full["message"]["content"] == choice["message"]["content"]
    content, choices = full["message"]["content"], profile.choices(taxonomy)
    wider = answer_margin(full["logprobs"], content, choices, profile.completion(taxonomy, prediction.label))
    assert wider is not None and wider >= prediction.margin - 1e-9


def test_a_forced_single_choice_is_honoured_even_against_the_photo(vllm_server: Any, taxonomy: Taxonomy) -> None:
    for photo_label, forced_label in (("Pool", "Room"), ("Bar", "Lobby")):
        # Given a photo of one label and a request whose only choice is another label
        request = taxonomy.build_request(jpeg(COLOURS[photo_label])) | {
            "structured_outputs": {"choice": [taxonomy.completion(forced_label)]}
        }

        # When the engine answers it
        answer = post_json(vllm_server.base_url + "/invocations", request)

        # Then the answer is the forced choice, still with logprobs (computed after the grammar mask)
        choice = answer["choices"][0]
        assert choice["message"]["content"] == taxonomy.completion(forced_label)
        assert choice["logprobs"]["content"]


def test_held_out_accuracy_through_the_engine_is_at_least_90_percent(
    vllm_server: Any, taxonomy: Taxonomy, dataset_dir: Path
) -> None:
    from datasets import Image, List, load_from_disk

    # Given the validation split the trained model never saw, with the JPEG bytes the Lambda would send
    rows = load_from_disk(str(dataset_dir))["validation"].cast_column("images", List(Image(decode=False)))

    # When every photo goes through the engine with the production request
    correct = 0
    mistakes = []
    for row in rows:
        truth = next(
            taxonomy.parse_label(m["content"][0]["text"]) for m in row["messages"] if m["role"] == "assistant"
        )
        answer = post_json(
            vllm_server.base_url + "/invocations", taxonomy.build_request(row["images"][0]["bytes"])
        )
        predicted = taxonomy.parse_response(answer).label
        correct += predicted == truth
        if predicted != truth:
            mistakes.append((truth, predicted))

    # Then at least 90 % are right (chance is 25 %)
    assert len(rows) >= 20
    assert correct / len(rows) >= 0.9, f"{correct}/{len(rows)} right; mistakes (true, predicted): {mistakes}"


def test_boto3_invoke_endpoint_reaches_the_engine_through_sagemaker_runtimes_route(
    vllm_server: Any, taxonomy: Taxonomy
) -> None:
    from botocore.exceptions import ClientError
    from labeller_aws import SageMakerEndpoint
    from labeller_core import TransientFault

    client = runtime_client(vllm_server.base_url)

    # Given the Lambda's boto3 endpoint adapter, unmodified, aimed at the local engine
    endpoint = SageMakerEndpoint(client, SESSION_ENDPOINT_NAME)

    # When it invokes the endpoint with the production request, Then the answer parses to a taxonomy label
    answer = endpoint.invoke(json.dumps(taxonomy.build_request(jpeg(COLOURS["Bar"]))).encode())
    assert taxonomy.parse_response(answer).label in taxonomy.labels

    # A request the engine refuses comes back as SageMaker's ModelError with the container's status
    with pytest.raises(ClientError) as refused:
        client.invoke_endpoint(EndpointName=SESSION_ENDPOINT_NAME, Body=b'{"messages": 3}')
    assert refused.value.response["Error"]["Code"] == "ModelError"
    assert refused.value.response["OriginalStatusCode"] == 400

    # Another endpoint name is not found, which the adapter turns into a retryable fault
    with pytest.raises(TransientFault, match="not found"):
        SageMakerEndpoint(client, "some-other-endpoint").invoke(b"{}")


def test_the_engine_runs_with_serving_properties_engine_args(vllm_server: Any) -> None:
    from stacks.serving import serving_properties

    # Given the engine args LMI derives from serving.properties, in the CPU mapping
    expected = serving_properties.engine_args(serving_properties.load(), device="cpu")

    # Then the running engine's command line carries each of them
    command = vllm_server.log_path.read_text(encoding="utf-8").splitlines()[0]
    assert f"--max-num-seqs {expected['max_num_seqs']}" in command
    assert f"--max-model-len {expected['max_model_len']}" in command
    assert f"--limit-mm-per-prompt {expected['limit_mm_per_prompt']}" in command
    assert "--enable-prefix-caching" in command and "--dtype float32" in command
    assert "gpu-memory-utilization" not in command
    # the multimodal processor cache is off (every photo is unique), and this engine started with it off
    assert "--mm-processor-cache-gb 0" in command


def test_a_checkpoint_with_drifted_tensor_names_is_refused_by_the_name_check(
    tmp_path: Path, trained_model: Path, tiny_model_dir: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from training_job.serving_export import check_weight_names

    # Given the served model (it passes the check against its base) and a copy saved the way a config-built
    # transformers-5 model saves: vision_tower.* instead of the hub's vision_tower.vision_model.*
    check_weight_names(trained_model, str(tiny_model_dir))
    drifted = tmp_path / "drifted"
    shutil.copytree(trained_model, drifted)
    tensors = load_file(drifted / "model.safetensors")
    renamed = {
        name.replace("vision_tower.vision_model.", "vision_tower."): value for name, value in tensors.items()
    }
    assert renamed.keys() != tensors.keys()
    save_file(renamed, drifted / "model.safetensors", metadata={"format": "pt"})

    # When the project's own check compares it with the base, Then it is refused, naming both sides of the drift
    with pytest.raises(
        ValueError, match=r"\d+ missing \[vision_tower\.vision_model\..*\d+ unexpected \[vision_tower\.emb"
    ):
        check_weight_names(drifted, str(tiny_model_dir))
