"""classification.contract: the prompt, the endpoint request and the answer parser shared by every part."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionContentPartParam, ChatCompletionUserMessageParam
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

from classification.contract import InvalidAnswer, InvalidTaxonomy, Taxonomy

SEED_LABELS_HEAD = ("Hallway", "Sauna", "Surrounding environment and attractions")
REQUEST_KEYS = (
    CompletionCreateParamsNonStreaming.__required_keys__ | CompletionCreateParamsNonStreaming.__optional_keys__
)
# vLLM's own extension (one-of-N constrained decoding); the OpenAI SDK sends it as `extra_body`.
VLLM_EXTRA_KEYS = {"structured_outputs"}


def validate_as_openai_request(body: dict[str, Any]) -> None:
    """Check a request body against the openai package's chat-completion request types, strictly.

    The SDK types use lazily validated iterables and ignore unknown keys, so each message and content part is
    validated on its own and must come back unchanged (nothing unknown dropped, nothing missing).
    """
    unknown = set(body) - REQUEST_KEYS - VLLM_EXTRA_KEYS
    assert not unknown, f"keys neither OpenAI nor vLLM know: {unknown}"
    standard = {k: v for k, v in body.items() if k not in VLLM_EXTRA_KEYS}
    # `model` is required by OpenAI but optional for vLLM (defaults to the served model), so LMI needs none.
    TypeAdapter(CompletionCreateParamsNonStreaming).validate_python({"model": "served-model", **standard})
    part_adapter = TypeAdapter(ChatCompletionContentPartParam)
    for message in body["messages"]:
        TypeAdapter(ChatCompletionUserMessageParam).validate_python(message)
        assert message["role"] == "user"
        for part in message["content"]:
            assert part_adapter.dump_python(part_adapter.validate_python(part), exclude_unset=True) == part


def vllm_response(answer: str, logprobs: list[float] | None) -> dict[str, Any]:
    """A chat completion as vLLM's OpenAI server returns it (the seed's answer has a leading space)."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": answer, "refusal": None, "tool_calls": []},
        "logprobs": None,
        "finish_reason": "stop",
        "stop_reason": None,
    }
    if logprobs is not None:
        tokens = answer.split(" ")
        choice["logprobs"] = {
            "content": [
                {
                    "token": token,
                    "logprob": value,
                    "bytes": list(token.encode()),
                    "top_logprobs": [{"token": token, "logprob": value, "bytes": list(token.encode())}],
                }
                for token, value in zip(tokens, logprobs, strict=False)
            ]
        }
    return {
        "id": "chatcmpl-6c1b3f0e",
        "object": "chat.completion",
        "created": 1764100000,
        "model": "/opt/ml/model",
        "choices": [choice],
        "usage": {"prompt_tokens": 2180, "total_tokens": 2192, "completion_tokens": 12},
        "prompt_logprobs": None,
    }


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load()


def test_default_taxonomy_is_the_seeds_26_labels_in_the_seeds_prompt(taxonomy: Taxonomy) -> None:
    assert len(taxonomy.labels) == 26
    assert taxonomy.labels[:3] == SEED_LABELS_HEAD
    assert taxonomy.prompt.startswith("Fill in the blank: this is a photo of a {}, you should select the ")
    assert taxonomy.prompt.endswith(
        "provided labels: [Hallway,Sauna,Surrounding environment and attractions,"
        "Business Center,Pets,Restaurant,Fitness Facility,Activities,Pool,Exterior,"
        "Bar,Transportation,Bathhouse,Food and Dining,Lobby,Shopping,Parking,"
        "Staircase/Elevator,Laundry Room,Room,Banquet Hall,Spa,Hot springs,"
        "Terrace/Patio,Entertainment facility,Other]"
    )


def test_training_and_inference_ask_the_same_question(taxonomy: Taxonomy) -> None:
    # Given the dataset row of a Pool photo and the request of a production photo
    row = taxonomy.training_messages("Pool")
    request = taxonomy.build_request(b"\xff\xd8jpeg")

    # Then the user text is byte-identical and the answer is the seed's sentence
    assert row[0]["content"][0]["text"] == request["messages"][0]["content"][0]["text"] == taxonomy.prompt
    assert row[1]["content"][0]["text"] == "this is a photo of Pool."
    assert taxonomy.inference_messages() == row[:1]


def test_request_body_is_a_valid_openai_chat_completion_with_the_vllm_choice_constraint(
    taxonomy: Taxonomy,
) -> None:
    # Given a JPEG
    jpeg = b"\xff\xd8\xff\xe0 a tiny jpeg"

    # When the request is built
    body = taxonomy.build_request(jpeg)

    # Then it validates against the openai package's request types, carries the image as a base64 data URL,
    # and constrains the answer to exactly the taxonomy's sentences
    validate_as_openai_request(body)
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == jpeg
    # (with the leading space the chat template puts before every trained answer: see the template test below)
    assert body["structured_outputs"] == {"choice": [f" this is a photo of {label}." for label in taxonomy.labels]}
    assert body["logprobs"] is True and body["temperature"] == 0.0 and body["max_tokens"] <= 32
    json.dumps(body)  # serialisable as is


def test_choices_are_exactly_what_the_trl_chat_template_renders_after_the_prompt(
    taxonomy: Taxonomy, tmp_path: Path
) -> None:
    # Given the processor training and serving use: the tiny model's, which carries TRL's LLaVA-NeXT template
    from transformers import AutoProcessor
    from trl.chat_template_utils import llava_next_chat_template

    from training_job.tiny_model import build_tiny_model

    processor = AutoProcessor.from_pretrained(build_tiny_model(tmp_path, taxonomy))
    assert processor.chat_template == llava_next_chat_template

    # When every training row is rendered, and the production question with a generation prompt
    prompt = processor.apply_chat_template(
        taxonomy.inference_messages(), add_generation_prompt=True, tokenize=False
    )
    rendered = {
        label: processor.apply_chat_template(taxonomy.training_messages(label), tokenize=False)
        for label in taxonomy.labels
    }

    # Then each row is the prompt, then the allowed choice verbatim, then EOS: the model is asked to generate
    # exactly the text it was trained on, leading space included
    for label, choice in zip(taxonomy.labels, taxonomy.choices, strict=True):
        assert rendered[label].startswith(prompt)
        generated, eos, _ = rendered[label][len(prompt) :].partition(processor.tokenizer.eos_token)
        assert eos == "</s>"
        assert generated == choice == taxonomy.completion(label) == " " + taxonomy.answer(label)
    assert not taxonomy.answer("Pool").startswith(" ")  # the training target: the template adds the space


@pytest.mark.parametrize(
    "text", [" this is a photo of Pool.", "this is a photo of Pool.", " this is a photo of Pool"]
)
def test_parser_accepts_the_answer_with_or_without_the_leading_space(taxonomy: Taxonomy, text: str) -> None:
    assert taxonomy.parse_label(text) == "Pool"


def test_the_openai_check_catches_a_malformed_request(taxonomy: Taxonomy) -> None:
    body = taxonomy.build_request(b"jpeg")
    body["messages"][0]["content"][1] = {"type": "image_url", "image_url": {"uri": "data:..."}}
    with pytest.raises((ValidationError, AssertionError)):
        validate_as_openai_request(body)


def test_parser_reads_the_seeds_answer_with_logprobs_as_label_and_confidence(taxonomy: Taxonomy) -> None:
    # Given vLLM's response for the seed's example answer, with per-token logprobs
    logprobs = [-0.01, -0.002, -0.0, -0.001, -0.003, -0.2]
    response = vllm_response(" this is a photo of Terrace/Patio.", logprobs)
    ChatCompletion.model_validate(response)  # the fixture is a real chat-completion shape

    # When it is parsed (as a dict, and as the raw bytes the endpoint returns)
    parsed = taxonomy.parse_response(response)
    from_bytes = taxonomy.parse_response(json.dumps(response).encode())

    # Then the label is Terrace/Patio and the confidence is the answer's probability
    assert parsed == from_bytes
    assert parsed.label == "Terrace/Patio"
    assert parsed.confidence == pytest.approx(math.exp(sum(logprobs)))


def test_parser_without_logprobs_gives_no_confidence(taxonomy: Taxonomy) -> None:
    parsed = taxonomy.parse_response(vllm_response("this is a photo of Room.", None))
    assert (parsed.label, parsed.confidence) == ("Room", None)


@pytest.mark.parametrize(
    "response",
    [
        vllm_response(" this is a photo of Kitchen.", [-0.1]),  # not a taxonomy label
        vllm_response("Room", [-0.1]),  # not the sentence
        vllm_response("this is a photo of room.", [-0.1]),  # labels are exact
        {"choices": []},
        {"choices": [{"message": {"content": None}}]},
        {"error": {"message": "CUDA out of memory", "code": 500}},
        b"<html>502 Bad Gateway</html>",
        "",
    ],
    ids=["unknown-label", "bare-word", "wrong-case", "no-choices", "null-content", "error-body", "html", "empty"],
)
def test_parser_refuses_anything_but_one_taxonomy_label(taxonomy: Taxonomy, response: Any) -> None:
    with pytest.raises(InvalidAnswer):
        taxonomy.parse_response(response)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["Pool"], "at least 2"),
        (["Pool", "pool"], "twice"),
        (["Pool", "Bar, Lounge"], "contains"),
        (["Pool", " Bar"], "outer spaces"),
        (["Pool", ""], "non-empty"),
    ],
)
def test_unusable_taxonomies_are_refused_with_the_reason(labels: list[str], message: str) -> None:
    with pytest.raises(InvalidTaxonomy, match=message):
        Taxonomy(tuple(labels))


def test_taxonomy_file_can_be_replaced_and_bad_files_are_named(tmp_path: Path) -> None:
    custom = tmp_path / "taxonomy.json"
    custom.write_text(json.dumps({"labels": ["Room", "Pool", "Other"]}), encoding="utf-8")
    assert Taxonomy.load(custom).labels == ("Room", "Pool", "Other")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidTaxonomy, match=r"broken\.json"):
        Taxonomy.load(broken)
    with pytest.raises(InvalidTaxonomy, match=r"missing\.json"):
        Taxonomy.load(tmp_path / "missing.json")
