"""The local serving backend over HTTP: SageMaker's container contract with the production chat request/response.

A tiny random LLaVA-NeXT answers: whatever its (untrained) weights, the answer must be one of the choices, its
confidence a probability, and every malformed request a 4xx that leaves the server healthy.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from botocore.exceptions import ClientError
from serving_testkit import jpeg, send

from classification.contract import Taxonomy
from model_code.local_server import LocalServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def _post(server: Any, request: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    return send(server.url + "/invocations", body)


def test_ping_answers_200_once_the_model_is_loaded(server: Any) -> None:
    status, body = send(server.url + "/ping")
    assert (status, body["status"]) == (200, "Healthy")


def test_ping_answers_503_before_loading_and_500_when_the_model_cannot_load(tmp_path: Path) -> None:
    # Given a server over a folder that holds no model
    not_a_model = LocalServer(tmp_path, port=0)
    assert not_a_model.ping()[0] == 503  # before loading starts: SageMaker keeps waiting

    # When it tries to load it
    with not_a_model:
        with pytest.raises(RuntimeError, match=r"no config\.json"):
            not_a_model.wait_until_ready(timeout=30)
        status, body = send(not_a_model.url + "/ping")
        invoke_status, error = _post(not_a_model, {"messages": []})

    # Then the health check fails with the reason, and invocations are refused instead of crashing
    assert (status, body["status"]) == (500, "Failed")
    assert "no config.json" in body["error"]
    assert invoke_status == 503 and "no config.json" in error["error"]["message"]


def test_the_lambdas_request_gets_a_taxonomy_label_with_a_probability(server: Any, taxonomy: Taxonomy) -> None:
    # When the exact request the Lambda builds is posted
    status, response = _post(server, taxonomy.build_request(jpeg(size=(800, 600))))

    # Then the production parser reads a taxonomy label and a confidence in (0, 1]
    assert status == 200, response
    prediction = taxonomy.parse_response(response)
    assert prediction.label in taxonomy.labels
    assert prediction.confidence is not None and 0 < prediction.confidence <= 1
    choice = response["choices"][0]
    assert choice["message"]["content"] in taxonomy.choices  # verbatim one of the allowed answers
    assert choice["finish_reason"] == "stop"
    tokens = choice["logprobs"]["content"]
    assert len(tokens) == response["usage"]["completion_tokens"]
    assert all(len(token["top_logprobs"]) == 1 for token in tokens)  # top_logprobs=1 in the request
    # The compact profile: a 4:3 photo is 1,026 image tokens, plus the prompt text.
    assert response["usage"]["prompt_tokens"] > 1026


def test_prompt_is_byte_identical_to_the_training_prompt(server: Any, taxonomy: Taxonomy) -> None:
    from model_code.chat_protocol import parse_request

    request = parse_request(json.dumps(taxonomy.build_request(jpeg())).encode())
    training = server.scorer.processor.apply_chat_template(
        taxonomy.inference_messages(), add_generation_prompt=True
    )

    assert server.scorer.render_prompt(request.messages) == training


def test_reported_logprobs_are_the_models_own_likelihood_of_the_answer(server: Any, taxonomy: Taxonomy) -> None:
    # Given the scorer's answer for a photo (prompt cached, shared prefix once, tails batched)
    from model_code.chat_protocol import parse_request

    request = parse_request(json.dumps(taxonomy.build_request(jpeg((200, 40, 40)))).encode())
    answer = server.scorer.answer(request)

    # When each choice is scored the slow way, one full forward pass over prompt + answer
    scorer = server.scorer
    prompt = scorer.render_prompt(request.messages)
    inputs = scorer.processor(images=[request.image], text=[prompt], return_tensors="pt", add_special_tokens=False)
    eos = scorer.tokenizer.eos_token_id
    naive: dict[str, float] = {}
    for choice in taxonomy.choices:
        tail = scorer.tokenizer(choice, add_special_tokens=False)["input_ids"] + [eos]  # verbatim, as vLLM
        ids = torch.cat([inputs["input_ids"], torch.tensor([tail])], dim=1)
        with torch.inference_mode():
            logits = scorer.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=inputs["pixel_values"],
                image_sizes=inputs["image_sizes"],
            ).logits[0]
        rows = logits[ids.shape[1] - len(tail) - 1 : -1].log_softmax(-1)
        naive[choice] = float(rows.gather(1, torch.tensor(tail).unsqueeze(1)).sum())

    # Then the answer is the most likely choice and its reported logprobs sum to that likelihood
    assert answer.content == max(naive, key=naive.__getitem__)
    assert sum(token.logprob for token in answer.tokens) == pytest.approx(naive[answer.content], abs=1e-3)
    assert dict(answer.ranking) == pytest.approx(naive, abs=1e-3)


def test_the_answer_is_always_one_of_the_requested_choices(server: Any, taxonomy: Taxonomy) -> None:
    # Given choices the model never saw (words outside its training text, one a prefix of another)
    choices = ["zebra", "zebra crossing", "a photo of Pool.", "Ω"]
    request = taxonomy.build_request(jpeg()) | {"structured_outputs": {"choice": choices}}

    status, response = _post(server, request)

    assert status == 200, response
    assert response["choices"][0]["message"]["content"] in choices


def test_max_tokens_excludes_longer_choices(server: Any, taxonomy: Taxonomy) -> None:
    # Given one short and one long choice, and a limit only the short one fits
    request = taxonomy.build_request(jpeg(), max_tokens=3) | {
        "structured_outputs": {"choice": ["Pool", "this is a photo of Surrounding environment and attractions."]}
    }
    status, response = _post(server, request)
    assert (status, response["choices"][0]["message"]["content"]) == (200, "Pool")

    # When no choice fits, the request is refused rather than answered with a cut-off text
    status, error = _post(server, request | {"max_tokens": 1, "structured_outputs": {"choice": ["a b c d e"]}})
    assert status == 400 and error["error"]["param"] == "max_tokens"


def _image_part(url: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _with_image(url: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "Q"}, _image_part(url)]}]}


GOOD_URL = "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()
CHOICES = {"structured_outputs": {"choice": ["yes", "no"]}}
MALFORMED: dict[str, tuple[bytes | dict[str, Any], str]] = {
    "bad JSON": (b'{"messages": [', "not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8"),
    "JSON list": (b"[]", "must be a JSON object"),
    "no messages": (dict(CHOICES), "messages is required"),
    "empty messages": ({"messages": [], **CHOICES}, "non-empty list"),
    "no image": ({"messages": [{"role": "user", "content": "hello"}], **CHOICES}, "no image"),
    "bad base64": (_with_image("data:image/jpeg;base64,@@not-base64@@") | CHOICES, "not valid base64"),
    "non-image bytes": (
        _with_image("data:image/jpeg;base64," + base64.b64encode(b"hello, not a photo").decode()) | CHOICES,
        "not an image",
    ),
    "zero-byte image": (_with_image("data:image/jpeg;base64,") | CHOICES, "empty file"),
    "https URL": (_with_image("https://example.com/a.jpg") | CHOICES, "base64 data URL"),
    "text media type": (_with_image("data:text/plain;base64,aGk=") | CHOICES, "not image/*"),
    "image_url not a string": (_with_image(42) | CHOICES, "image_url must be"),
    "two images": (
        {
            "messages": [{"role": "user", "content": [_image_part(GOOD_URL), _image_part(GOOD_URL)]}],
            **CHOICES,
        },
        "at most 1",
    ),
    "unknown part type": (
        {"messages": [{"role": "user", "content": [{"type": "audio"}, _image_part(GOOD_URL)]}], **CHOICES},
        "must be text or image_url",
    ),
    "unknown role": ({"messages": [{"role": "tool", "content": "x"}], **CHOICES}, "role must be one of"),
    "assistant last": (
        {
            "messages": [
                {"role": "user", "content": [_image_part(GOOD_URL)]},
                {"role": "assistant", "content": "this is"},
            ],
            **CHOICES,
        },
        "last message must come from the user",
    ),
    "choices not strings": (_with_image(GOOD_URL) | {"structured_outputs": {"choice": ["a", 3]}}, "choice[1]"),
    "choices empty": (_with_image(GOOD_URL) | {"structured_outputs": {"choice": []}}, "non-empty list"),
    "choices repeated": (_with_image(GOOD_URL) | {"structured_outputs": {"choice": ["a", "a"]}}, "twice"),
    "regex constraint": (_with_image(GOOD_URL) | {"structured_outputs": {"regex": "a+"}}, "not supported"),
    "legacy guided_choice": (_with_image(GOOD_URL) | CHOICES | {"guided_choice": ["a"]}, "removed in vLLM"),
    "logprobs not bool": (_with_image(GOOD_URL) | CHOICES | {"logprobs": "yes"}, "logprobs must be"),
    "top_logprobs too large": (
        _with_image(GOOD_URL) | CHOICES | {"logprobs": True, "top_logprobs": 21},
        "top_logprobs must be",
    ),
    "max_tokens zero": (_with_image(GOOD_URL) | CHOICES | {"max_tokens": 0}, "max_tokens must be"),
    "max_tokens text": (_with_image(GOOD_URL) | CHOICES | {"max_tokens": "32"}, "max_tokens must be"),
    "temperature negative": (_with_image(GOOD_URL) | CHOICES | {"temperature": -1}, "temperature must be"),
    "stream": (_with_image(GOOD_URL) | CHOICES | {"stream": True}, "stream=true"),
    "n above 1": (_with_image(GOOD_URL) | CHOICES | {"n": 2}, "n must be 1"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_a_clear_400_and_the_server_stays_healthy(server: Any, case: str) -> None:
    request, message = MALFORMED[case]

    status, error = _post(server, request)

    assert status == 400, error
    assert message in error["error"]["message"]
    assert error["error"]["type"] == "BadRequestError"
    assert send(server.url + "/ping")[0] == 200


def test_http_level_refusals(server: Any) -> None:
    # Wrong content type, wrong method, unknown path
    assert send(server.url + "/invocations", b"{}", content_type="text/plain")[0] == 415
    assert send(server.url + "/invocations")[0] == 405
    assert send(server.url + "/predict", b"{}")[0] == 404

    # A body above SageMaker's 6 MB limit is refused from its Content-Length, before it is read
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(7 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert "limit" in json.loads(response.read())["error"]["message"]
    connection.close()


def _runtime(server: Any) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_boto3_invoke_endpoint_works_against_the_local_server(server: Any, taxonomy: Taxonomy) -> None:
    # When an unmodified boto3 client calls InvokeEndpoint with the Lambda's request
    runtime = _runtime(server)
    response = runtime.invoke_endpoint(
        EndpointName="photo-labeler",
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(taxonomy.build_request(jpeg())).encode(),
    )

    # Then the body is the chat completion
    assert taxonomy.parse_response(response["Body"].read()).label in taxonomy.labels
    assert response["InvokedProductionVariant"] == "AllTraffic"


def test_boto3_sees_sagemakers_error_codes(server: Any) -> None:
    runtime = _runtime(server)
    # An endpoint that does not exist: ValidationError, as SageMaker answers
    with pytest.raises(ClientError) as missing:
        runtime.invoke_endpoint(EndpointName="other", ContentType="application/json", Body=b"{}")
    assert missing.value.response["Error"]["Code"] == "ValidationError"

    # A request the container refuses: ModelError carrying the container's status
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint(EndpointName="photo-labeler", ContentType="application/json", Body=b"{")
    error = refused.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400


def test_cli_rejects_a_folder_without_a_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "model_code.local_server", "--model-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no config.json" in result.stderr


@pytest.mark.slow
def test_cli_serves_until_sigterm(tiny_model: Path, taxonomy: Taxonomy) -> None:
    # Given the documented command on an ephemeral port
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_code.local_server",
            "--model-dir",
            str(tiny_model),
            "--port",
            "0",
            "--quiet",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # "listening on http://127.0.0.1:PORT ..."
        url = first.split()[2]
        assert process.stdout.readline().startswith("ready")

        # When a request is sent
        status, response = send(url + "/invocations", json.dumps(taxonomy.build_request(jpeg())).encode())
        assert status == 200
        assert math.isfinite(response["choices"][0]["logprobs"]["content"][0]["logprob"])
    finally:
        # Then SIGTERM (how SageMaker stops a container) ends it cleanly
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
