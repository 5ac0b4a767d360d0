"""Constrained decoding as the endpoint does it: vLLM's choice grammar, greedy, logprobs after the mask.

The decoder is checked against a plain-Python reference of the mask on the random tiny model, and against the
real engine (the session's vLLM serving the trained tiny model): same label, confidence within 0.01, for every
validation photo.
"""

from __future__ import annotations

import io
import json
import math
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgrammar
from training_testkit import colour_photo

from classification.contract import InvalidAnswer, Taxonomy
from classification.model_profile import BASE, BASE_PREFILLED
from training_job.constrained import (
    ConstrainedDecoder,
    ModelLoadError,
    RequestError,
    choice_grammar,
    decode_image,
    parse_request,
)


def _jpeg(label: str = "Pool", seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    colour_photo(label, np.random.default_rng(seed)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def decoder(tiny_model_dir: Path) -> ConstrainedDecoder:
    return ConstrainedDecoder(tiny_model_dir, device="cpu")


def test_the_grammar_is_vllms_alternation_of_escaped_literals() -> None:
    # vllm.v1.structured_output.utils.choice_as_grammar's output for the same choices (vLLM 0.32)
    assert choice_grammar([" this is a photo of Pool.", 'a "b"\\c', "x\ny\tz\x01"]) == (
        'root ::= " this is a photo of Pool." | "a \\"b\\"\\\\c" | "x\\ny\\tz\\u0001"'
    )


def test_the_compiled_grammar_accepts_exactly_the_choices(decoder: ConstrainedDecoder) -> None:
    # Given the grammar of two choices, compiled for the model's tokenizer
    compiled = decoder._compiled(("ab.", "ac."))

    # Then each choice is accepted and ends the grammar; a prefix does not end it; anything else is refused
    for text, accepted, complete in [
        ("ab.", True, True),
        ("ac.", True, True),
        ("ab", True, False),
        ("ad.", False, False),
    ]:
        matcher = xgrammar.GrammarMatcher(compiled, override_stop_tokens=decoder.stop_token_ids)
        assert matcher.accept_string(text) is accepted
        if accepted:
            assert matcher.accept_token(decoder.stop_token_ids[0]) is complete


def test_a_forced_single_character_choice_has_confidence_one(
    decoder: ConstrainedDecoder, taxonomy: Taxonomy
) -> None:
    # Given a request whose only choice has one spelling in tokens ("a", then the EOS the grammar forces)
    request = taxonomy.build_request(_jpeg()) | {"structured_outputs": {"choice": ["a"]}}

    # When it is answered
    decoded = decoder.answer(request)

    # Then every token is forced: logprob 0.0 as vLLM returns it, though the model alone found them unlikely
    assert decoded.content == "a" and decoded.finish_reason == "stop"
    assert [t.token_id for t in decoded.tokens][-1] == decoder.tokenizer.eos_token_id
    assert [t.logprob for t in decoded.tokens] == [0.0, 0.0]
    assert decoded.confidence == 1.0
    assert all(t.full_logprob < 0 for t in decoded.tokens)


def test_each_step_is_the_best_allowed_token_with_its_probability_renormalised_over_the_allowed_ones(
    decoder: ConstrainedDecoder, taxonomy: Taxonomy
) -> None:
    # Given the random tiny model (it knows nothing, so the grammar has to do all the work) and a photo
    import torch

    request = taxonomy.build_request(_jpeg("Bar"))
    parsed = parse_request(request)
    image = decode_image(parsed.image_bytes)
    vocabulary = [decoder.tokenizer.decode([i]) for i in range(decoder.vocab_size)]
    eos = decoder.tokenizer.eos_token_id
    special = set(decoder.tokenizer.all_special_ids)

    # When it is answered under the choice grammar
    decoded = decoder.answer(request)

    # Then the answer is one of the choices, and every step agrees with a plain-Python reference of the mask
    # (allowed: a token whose text keeps the answer a prefix of some choice; EOS once the answer is a choice),
    # recomputed without the KV cache from the full vocabulary's probabilities
    assert decoded.content in taxonomy.choices and decoded.finish_reason == "stop"
    prompt = decoder.render_prompt(parsed.messages)
    text = ""
    generated: list[int] = []
    renormalised_somewhere = False
    for token in decoded.tokens:
        allowed = [
            i
            for i, piece in enumerate(vocabulary)
            if i not in special and piece and any(c.startswith(text + piece) for c in taxonomy.choices)
        ]
        if text in taxonomy.choices:
            allowed.append(eos)
        inputs = decoder.processor(images=[image], text=[prompt], return_tensors="pt", add_special_tokens=False)
        ids = torch.cat([inputs["input_ids"], torch.tensor([generated], dtype=torch.long)], dim=1)
        with torch.inference_mode():
            logits = decoder.model(
                input_ids=ids,
                pixel_values=inputs["pixel_values"],
                image_sizes=inputs["image_sizes"],
                attention_mask=torch.ones_like(ids),
            ).logits[0, -1]
        full = logits.float().log_softmax(-1)
        restricted = full[allowed] - torch.logsumexp(full[allowed], 0)
        best = allowed[int(restricted.argmax())]
        assert token.token_id == best
        assert token.logprob == pytest.approx(float(restricted.max()), abs=1e-4)
        assert token.full_logprob == pytest.approx(float(full[best]), abs=1e-4)
        assert token.logprob >= token.full_logprob - 1e-6  # the mask only removes competitors
        renormalised_somewhere |= token.logprob > token.full_logprob + 1e-3
        generated.append(token.token_id)
        text = decoder.tokenizer.decode(generated, skip_special_tokens=True)
    assert renormalised_somewhere  # the model put mass outside the grammar, which the mask took away
    # The Lambda's parser reads the same confidence from the response
    prediction = taxonomy.parse_response(decoded.response())
    assert prediction.label == taxonomy.parse_label(decoded.content)
    assert prediction.confidence == pytest.approx(math.exp(sum(t.logprob for t in decoded.tokens)))
    assert prediction.confidence == pytest.approx(decoded.confidence)


def test_an_answer_cut_by_max_tokens_is_not_a_label(decoder: ConstrainedDecoder, taxonomy: Taxonomy) -> None:
    # Given a request whose max_tokens is shorter than every choice
    decoded = decoder.answer(taxonomy.build_request(_jpeg(), max_tokens=3))

    # Then vLLM's length cut is reproduced, and the Lambda's parser refuses the partial answer
    assert decoded.finish_reason == "length" and len(decoded.tokens) == 3
    assert decoded.content not in taxonomy.choices
    with pytest.raises(InvalidAnswer):
        taxonomy.parse_response(decoded.response())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"structured_outputs": {}}, "structured_outputs.choice"),
        ({"structured_outputs": {"choice": ["a", ""]}}, "structured_outputs.choice"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y"}}]}
                ]
            },
            "data: URL",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:a;base64,%"}}]}
                ]
            },
            "not valid base64",
        ),
        ({"messages": [{"role": "user", "content": "no image"}]}, "exactly one image"),
        ({"add_special_tokens": "yes"}, "add_special_tokens must be true or false"),
        ({"continue_final_message": True}, "needs add_generation_prompt false"),
        ({"top_logprobs": 21}, "top_logprobs must be an integer 0..20"),
    ],
)
def test_a_request_the_endpoint_would_refuse_names_its_field(
    taxonomy: Taxonomy, change: dict[str, object], message: str
) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request(taxonomy.build_request(_jpeg()) | change)


def test_the_request_is_rendered_as_the_training_prompt(decoder: ConstrainedDecoder, taxonomy: Taxonomy) -> None:
    # The image_url part becomes the chat template's image slot, so the prompt is the one training rendered
    parsed = parse_request(taxonomy.build_request(_jpeg()))
    assert parsed.messages == taxonomy.inference_messages()
    assert parsed.choices == tuple(taxonomy.choices)
    assert decode_image(parsed.image_bytes).mode == "RGB"
    with pytest.raises(RequestError, match="cannot be decoded"):
        decode_image(b"not an image")


def test_the_base_profiles_render_as_vllm_would_with_bos_and_a_prefilled_answer_left_open(
    decoder: ConstrainedDecoder, taxonomy: Taxonomy
) -> None:
    # Given the base profiles' requests
    bare = parse_request(taxonomy.build_request(_jpeg(), profile=BASE))
    prefilled = parse_request(taxonomy.build_request(_jpeg(), profile=BASE_PREFILLED))

    # Then the bare one asks for BOS and a new answer; the prefilled one continues "this is a photo of"
    assert (bare.add_special_tokens, bare.continue_final_message, bare.top_logprobs) == (True, False, 5)
    assert decoder.render_prompt(bare.messages).endswith(" [/INST]")
    assert prefilled.continue_final_message is True
    assert decoder.render_prompt(prefilled.messages, continue_final_message=True).endswith(
        " [/INST] this is a photo of"
    )

    # And the decoded answer lists the top alternatives after the mask, the answer's own token first
    decoded = decoder.answer(taxonomy.build_request(_jpeg(), profile=BASE))
    first = decoded.tokens[0]
    assert len(first.top) == 5 and first.top[0] == (first.token, first.logprob)
    assert decoded.tokens[-1].top[1][1] == -9999.0  # the stop token is forced: the rest masked
    assert decoded.content in BASE.choices(taxonomy)


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        ConstrainedDecoder(tmp_path)


@pytest.mark.slow
def test_the_evaluation_answers_every_validation_photo_as_the_local_vllm_does(
    vllm_server: Any, dataset_dir: Path, taxonomy: Taxonomy
) -> None:
    # Given the session's trained tiny model, served by the real engine, and the evaluation's own decoding of it
    from datasets import load_from_disk

    from training_job.evaluate import _jpeg, _undecoded, decode_constrained

    rows = _undecoded(load_from_disk(str(dataset_dir))["validation"])
    decoder = ConstrainedDecoder(vllm_server.model_dir, device="cpu")

    # When every validation photo goes through the evaluation and, as the Lambda's request, through vLLM
    evaluated = decode_constrained(decoder, rows, taxonomy, progress=False)
    served = []
    for images in rows["images"]:
        body = json.dumps(taxonomy.build_request(_jpeg(images[0]))).encode()
        request = urllib.request.Request(
            vllm_server.base_url + "/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            served.append(taxonomy.parse_response(response.read()))

    # Then the labels are the same and the confidences, read by the Lambda's parser, agree within 0.01
    assert len(evaluated) == len(served) == len(rows) > 0
    for mine, theirs in zip(evaluated, served, strict=True):
        assert mine.predicted == theirs.label
        assert mine.confidence == pytest.approx(theirs.confidence, abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("profile", [BASE, BASE_PREFILLED], ids=["base", "base-prefilled"])
def test_the_base_profiles_are_answered_as_the_local_vllm_answers_them(
    vllm_server: Any, dataset_dir: Path, taxonomy: Taxonomy, profile: Any
) -> None:
    # Given the session's served model and the evaluation's decoding of it, asked in a base profile (BOS added,
    # bare labels or a prefilled answer, five alternatives per token)
    from datasets import load_from_disk

    from training_job.evaluate import _jpeg, _undecoded

    rows = _undecoded(load_from_disk(str(dataset_dir))["validation"]).select(range(4))
    decoder = ConstrainedDecoder(vllm_server.model_dir, device="cpu")

    for images in rows["images"]:
        request = taxonomy.build_request(_jpeg(images[0]), profile=profile)

        # When the same request goes to the decoder and to vLLM
        decoded = decoder.answer(request)
        body = json.dumps(request).encode()
        http = urllib.request.Request(
            vllm_server.base_url + "/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(http, timeout=120) as response:
            served = json.loads(response.read())

        # Then both saw the same prompt (BOS and template included), gave the same answer, and the Lambda's
        # parser reads the same confidence and margin from both responses
        assert decoded.prompt_tokens == served["usage"]["prompt_tokens"]
        assert decoded.content == served["choices"][0]["message"]["content"]
        mine = taxonomy.parse_response(decoded.response(), profile=profile)
        theirs = taxonomy.parse_response(served, profile=profile)
        assert mine.label == theirs.label
        assert mine.confidence == pytest.approx(theirs.confidence, abs=0.01)
        assert mine.margin == pytest.approx(theirs.margin, abs=0.01)
