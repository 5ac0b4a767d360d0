"""The rollout probe (lambda/probe_core.py, lambda/probe_handler.py): against the real vLLM engine, against
endpoints that break the contract, and through the handler as the state machine invokes it."""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from labeller_core import TransientFault
from labeller_testkit import ENDPOINT, FakeContext, queue_endpoint_reply, vllm_answer
from PIL import Image
from probe_core import PROBE_PHOTO_SIZE, ProbeFailed, probe_photo, run_probe

from classification.contract import DEFAULT_TAXONOMY_PATH, Taxonomy

TAXONOMY = Taxonomy(("Pool", "Room", "Bar"))


class Scripted:
    """An endpoint that answers each request with `reply(request)` and keeps what it was sent."""

    def __init__(self, reply: Callable[[dict[str, Any]], dict[str, Any] | str]) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []

    def invoke(self, body: bytes) -> bytes:
        request = json.loads(body)
        self.requests.append(request)
        answer = self.reply(request)
        return (answer if isinstance(answer, str) else json.dumps(answer)).encode()


def _obedient(label: str = "Pool") -> Scripted:
    # Honours the choice list as vLLM does: the model's label unless the list excludes it
    def reply(request: dict[str, Any]) -> dict[str, Any]:
        choices = request["structured_outputs"]["choice"]
        preferred = TAXONOMY.completion(label)
        return vllm_answer(label if preferred in choices else choices[0].split(" of ")[1].rstrip("."))

    return Scripted(reply)


def test_an_endpoint_that_honours_the_contract_passes_with_the_labellers_exact_request() -> None:
    endpoint = _obedient("Pool")
    jpeg = probe_photo()
    result = run_probe(endpoint, TAXONOMY, jpeg)
    assert result.label == "Pool" and 0 < result.confidence <= 1
    assert result.forced == TAXONOMY.completion("Room")
    # The first request is byte for byte the labeller's (labeller_core.encode_request), the second narrows it
    assert endpoint.requests[0] == TAXONOMY.build_request(jpeg)
    assert endpoint.requests[1] == TAXONOMY.build_request(jpeg) | {
        "structured_outputs": {"choice": [result.forced]}
    }


def test_the_probe_photo_is_a_real_jpeg_normalised_as_the_lambda_sends_it() -> None:
    image = Image.open(io.BytesIO(probe_photo()))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert max(image.size) <= 1008 and image.size[0] / image.size[1] == pytest.approx(
        PROBE_PHOTO_SIZE[0] / PROBE_PHOTO_SIZE[1], rel=0.01
    )


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            lambda request: vllm_answer("Pool") | {"choices": [{"message": {"content": " a swimming pool"}}]},
            "not one of",
        ),
        (
            lambda request: {"choices": [{"message": {"content": TAXONOMY.completion("Bar")}, "logprobs": None}]},
            "no per-token logprobs",
        ),
        (lambda request: vllm_answer("Pool"), "only choice was ' this is a photo of Room.'"),
        (lambda request: "<html>502 Bad Gateway</html>", "no chat completion"),
    ],
    ids=["free text", "no logprobs", "constraint ignored", "not json"],
)
def test_an_endpoint_that_breaks_the_contract_fails_the_probe(
    reply: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    with pytest.raises(ProbeFailed, match=reason):
        run_probe(Scripted(reply), TAXONOMY, probe_photo())


def test_a_transient_fault_is_left_to_the_state_machines_retry() -> None:
    class Failing:
        def invoke(self, body: bytes) -> bytes:
            raise TransientFault("InvokeEndpoint failed: ModelNotReadyException")

    with pytest.raises(TransientFault):
        run_probe(Failing(), TAXONOMY, probe_photo())


# --- the real engine ---------------------------------------------------------------------------------------------


class EngineEndpoint:
    """The session's vLLM engine through SageMaker's container route, dropping the request fields listed in
    `ignored` as an engine that does not know them would (vLLM ignores unknown fields without an error)."""

    def __init__(self, base_url: str, ignored: tuple[str, ...] = ()) -> None:
        self.url = f"{base_url}/invocations"
        self.ignored = ignored

    def invoke(self, body: bytes) -> bytes:
        request = {k: v for k, v in json.loads(body).items() if k not in self.ignored}
        sent = urllib.request.Request(
            self.url, data=json.dumps(request).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(sent, timeout=120) as response:
            return response.read()


@pytest.mark.slow
def test_the_real_engine_serving_the_trained_model_passes(vllm_server: Any, taxonomy: Taxonomy) -> None:
    result = run_probe(EngineEndpoint(vllm_server.base_url), taxonomy, probe_photo())
    assert result.label in taxonomy.labels and 0 < result.confidence <= 1
    assert result.forced in taxonomy.choices and result.forced != taxonomy.completion(result.label)


@pytest.mark.slow
@pytest.mark.parametrize(
    "ignored",
    [("structured_outputs", "logprobs", "top_logprobs"), ("structured_outputs",)],
    ids=["constraint-and-logprobs", "constraint"],
)
def test_the_real_engine_without_the_constraint_fails_the_probe(
    vllm_server: Any, taxonomy: Taxonomy, ignored: tuple[str, ...]
) -> None:
    # Given the same engine, but every request losing fields as an image that no longer understands them would
    endpoint = EngineEndpoint(vllm_server.base_url, ignored=ignored)
    # Then the probe refuses the model: free text, no confidence, or a forced choice it did not follow
    with pytest.raises(ProbeFailed) as failed:
        run_probe(endpoint, taxonomy, probe_photo())
    assert "no per-token logprobs" in str(failed.value) or "ignores structured_outputs.choice" in str(failed.value)


# --- the handler, as the state machine invokes it --------------------------------------------------------------


@pytest.fixture
def probe_handler(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import probe_handler

    probe_handler._taxonomy.cache_clear()
    monkeypatch.setattr(probe_handler.logger.registered_handler, "stream", io.StringIO())
    return probe_handler


def test_the_handler_probes_the_named_endpoint_and_returns_what_it_saw(probe_handler: Any) -> None:
    # Given moto's InvokeEndpoint scripted like an engine that honours the contract (the bundled taxonomy)
    labels = Taxonomy.load(DEFAULT_TAXONOMY_PATH).labels
    queue_endpoint_reply(vllm_answer(labels[0]))
    queue_endpoint_reply(vllm_answer(labels[1]))
    # When the state machine invokes the function
    result = probe_handler.lambda_handler({"EndpointName": ENDPOINT}, FakeContext())
    # Then it reports the label, its confidence and the forced choice it came back with
    assert result["label"] == labels[0] and result["forced"] == f" this is a photo of {labels[1]}."
    assert 0 < result["confidence"] <= 1


def test_the_handler_fails_the_probe_on_free_text_and_on_a_bad_event(probe_handler: Any) -> None:
    queue_endpoint_reply(vllm_answer("x") | {"choices": [{"message": {"content": "I see a hotel room"}}]})
    with pytest.raises(ProbeFailed, match="'I see a hotel room', not one of"):
        probe_handler.lambda_handler({"EndpointName": ENDPOINT}, FakeContext())
    with pytest.raises(ProbeFailed, match="names no endpoint"):
        probe_handler.lambda_handler({}, FakeContext())
