"""Request validation and response shape of the local backend (no model needed)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from serving_testkit import jpeg

from classification.contract import Taxonomy
from model_code.chat_protocol import RequestError, TokenLogprob, chat_completion, parse_request


def _body(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode()


def test_production_request_becomes_the_training_format(taxonomy: Taxonomy) -> None:
    # Given the exact request the Lambda sends
    request = taxonomy.build_request(jpeg(size=(640, 480)))

    # When it is parsed
    parsed = parse_request(_body(request))

    # Then the messages are the training rows' user turn, the image is decoded and the choices are the taxonomy's
    assert parsed.messages == taxonomy.inference_messages()
    assert parsed.image.size == (640, 480)
    assert parsed.choices == tuple(taxonomy.choices)
    assert (parsed.max_tokens, parsed.logprobs, parsed.top_logprobs) == (32, True, 1)


def test_without_choices_the_default_taxonomy_applies_or_the_request_is_refused(taxonomy: Taxonomy) -> None:
    # Given a request without structured_outputs
    request = taxonomy.build_request(jpeg())
    del request["structured_outputs"]

    # When the server has default choices, they apply; without them the request is refused (never free text)
    assert parse_request(_body(request), default_choices=["a", "b"]).choices == ("a", "b")
    with pytest.raises(RequestError, match=r"structured_outputs\.choice is required") as error:
        parse_request(_body(request))
    assert error.value.status == 400


def test_string_content_and_system_messages_are_accepted(taxonomy: Taxonomy) -> None:
    url = "data:image/png;base64," + base64.b64encode(jpeg()).decode()  # media type is not trusted: bytes are
    request = {
        "messages": [
            {"role": "system", "content": "You label hotel photos."},
            {"role": "user", "content": [{"type": "image_url", "image_url": url}, {"type": "text", "text": "Q"}]},
        ],
        "structured_outputs": {"choice": ["yes", "no"]},
    }

    parsed = parse_request(_body(request))

    assert parsed.messages == [
        {"role": "system", "content": [{"type": "text", "text": "You label hotel photos."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]},
    ]
    assert not parsed.logprobs and parsed.max_tokens is None


def test_response_has_the_vllm_shape_that_the_lambda_parses(taxonomy: Taxonomy) -> None:
    # Given an answer of two tokens
    tokens = [TokenLogprob(" Pool", -0.1, ((" Pool", -0.1),)), TokenLogprob("</s>", -0.2)]

    # When it is rendered
    response = chat_completion(
        content="this is a photo of Pool.", model="m", prompt_tokens=1100, tokens=tokens, logprobs=True
    )

    # Then the production parser reads the label and the confidence exp(sum of logprobs)
    prediction = taxonomy.parse_response(json.dumps(response))
    assert prediction.label == "Pool"
    assert prediction.confidence == pytest.approx(0.7408, abs=1e-4)
    assert response["usage"] == {"prompt_tokens": 1100, "completion_tokens": 2, "total_tokens": 1102}
    assert response["choices"][0]["logprobs"]["content"][0]["bytes"] == list(b" Pool")
    no_logprobs = chat_completion(content="x", model="m", prompt_tokens=1, tokens=tokens, logprobs=False)
    assert no_logprobs["choices"][0]["logprobs"] is None
