"""classification.margin on responses recorded from the real engine (vLLM 0.32 CPU build) and on edge cases.

tests/classification/data/vllm_responses.json holds real chat completions: each profile's request for two photos,
with the profile's top_logprobs and with 20, answered by vLLM serving an untrained tiny LLaVA-NeXT (see its
`recorded_with`). tests/model_code/test_vllm_engine.py checks the same properties against the live engine.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from classification.contract import Taxonomy
from classification.margin import MASKED_LOGPROB, answer_margin
from classification.model_profile import BASE, profile_named

RECORDED = json.loads((Path(__file__).resolve().parent / "data" / "vllm_responses.json").read_text())
TAXONOMY = Taxonomy(tuple(RECORDED["taxonomy"]["labels"]), tuple(RECORDED["taxonomy"]["descriptions"].items()))


def _records(profile: str | None = None, top: int | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in RECORDED["records"]
        if (profile is None or r["profile"] == profile) and (top is None or r["request"]["top_logprobs"] == top)
    ]


def _record(profile: str, colour: list[int], top: int) -> dict[str, Any]:
    (record,) = [r for r in _records(profile, top) if r["colour"] == colour]
    return record


def test_every_recorded_answer_has_a_margin_within_bounds_and_never_above_its_confidence() -> None:
    for record in RECORDED["records"]:
        prediction = TAXONOMY.parse_response(record["response"], profile=profile_named(record["profile"]))
        assert prediction.margin is not None and prediction.confidence is not None
        assert -1.0 <= prediction.margin <= prediction.confidence <= 1.0


def test_the_margin_is_the_answer_minus_the_best_rival_label_where_labels_part_at_one_token() -> None:
    # Given the prefilled base's real answer " Pool." whose first token had the rivals " Hall", " Banquet", ...
    record = _record("base-prefilled", [30, 80, 220], 20)
    first = record["response"]["choices"][0]["logprobs"]["content"][0]
    assert first["token"] == " Pool"
    rival = first["top_logprobs"][1]
    assert rival["token"] == " Hall"  # only " Hallway." starts so: another label

    # When it is parsed
    prediction = TAXONOMY.parse_response(record["response"], profile=profile_named("base-prefilled"))

    # Then the margin is p(" Pool.") - p(" Hall"), every later token being forced
    assert prediction.label == "Pool"
    assert prediction.margin == pytest.approx(math.exp(first["logprob"]) - math.exp(rival["logprob"]))


def test_other_spellings_of_the_same_answer_are_not_rivals() -> None:
    # Given " Hot springs." whose second step listed " springs" beside the chosen " s": the same label spelt
    # in other tokens
    record = _record("base-prefilled", [220, 60, 40], 20)
    steps = record["response"]["choices"][0]["logprobs"]["content"]
    assert [s["token"] for s in steps[:2]] == [" Hot", " s"]
    assert " springs" in [a["token"] for a in steps[1]["top_logprobs"]]

    # Then the rival is the best other first token, times nothing after: later steps only spell Hot springs
    prediction = TAXONOMY.parse_response(record["response"], profile=profile_named("base-prefilled"))
    best_other_first = max(
        math.exp(a["logprob"]) for a in steps[0]["top_logprobs"][1:] if a["token"] not in (" ", " Hot")
    )
    assert prediction.margin == pytest.approx(prediction.confidence - best_other_first)


def test_the_fine_tunes_single_logprob_gives_a_coarser_margin_never_above_the_full_one() -> None:
    # Given the same answers recorded with top_logprobs 1 (the fine-tune's unchanged request) and 20
    for colour in ([30, 80, 220], [220, 60, 40]):
        coarse = TAXONOMY.parse_response(_record("fine-tune", colour, 1)["response"])
        full = TAXONOMY.parse_response(_record("fine-tune", colour, 20)["response"])

        # Then they name the same label with the same confidence, and the coarse margin is the lower bound
        assert (coarse.label, coarse.confidence) == (full.label, full.confidence)
        assert coarse.margin is not None and full.margin is not None
        assert coarse.margin <= full.margin + 1e-12


def test_masked_entries_are_ignored_and_show_a_forced_token_has_no_rival() -> None:
    # Given a real answer with 20 alternatives per token: forced steps list one allowed token and 19 masked
    record = _record("base", [30, 80, 220], 20)
    steps = record["response"]["choices"][0]["logprobs"]["content"]
    assert steps[-1]["token"] == "</s>" and steps[-1]["logprob"] == 0.0
    assert all(a["logprob"] == MASKED_LOGPROB for a in steps[-1]["top_logprobs"][1:])
    content = record["response"]["choices"][0]["message"]["content"]
    choices = BASE.choices(TAXONOMY)

    # When the masked floor is replaced by a mass the list does not account for, the margin can only shrink
    unmasked = copy.deepcopy(steps)
    unmasked[-1]["top_logprobs"] = unmasked[-1]["top_logprobs"][:1]
    unmasked[-1]["logprob"] = math.log(0.9)
    kept = answer_margin({"content": steps}, content, choices, " Hallway")
    loosened = answer_margin({"content": unmasked}, content, choices, " Hallway")
    assert kept is not None and loosened is not None and loosened < kept


def test_a_clear_answer_has_a_margin_near_one_and_tokens_that_do_not_spell_the_answer_count_every_rival() -> None:
    choices = [" Pool", " Room"]
    clear = {
        "content": [
            {"token": " Pool", "logprob": math.log(0.98), "top_logprobs": [
                {"token": " Pool", "logprob": math.log(0.98)},
                {"token": " Room", "logprob": math.log(0.015)},
                {"token": " Po", "logprob": math.log(0.005)},
                {"token": "<pad>", "logprob": MASKED_LOGPROB},
            ]},
            {"token": "</s>", "logprob": 0.0, "top_logprobs": [{"token": "</s>", "logprob": 0.0}]},
        ]
    }  # fmt: skip
    # " Po" can only become " Pool": no rival; " Room" is
    assert answer_margin(clear, " Pool", choices, " Pool") == pytest.approx(0.98 - 0.015)

    # A tokenizer whose pieces do not spell the text: every listed alternative is a possible rival
    garbled = copy.deepcopy(clear)
    garbled["content"][0]["token"] = "Pool"
    garbled["content"][0]["top_logprobs"][0]["token"] = "Pool"
    assert answer_margin(garbled, " Pool", choices, " Pool") == pytest.approx(0.98 - 0.015)
    clear["content"][0]["top_logprobs"][1]["logprob"] = math.log(0.001)
    garbled["content"][0]["top_logprobs"][1]["logprob"] = math.log(0.001)
    assert answer_margin(clear, " Pool", choices, " Pool") == pytest.approx(0.98 - 0.001)
    assert answer_margin(garbled, " Pool", choices, " Pool") == pytest.approx(0.98 - 0.005)


@pytest.mark.parametrize(
    "logprobs",
    [None, {}, {"content": []}, {"content": [{"token": "x", "logprob": 0.5}]}, {"content": [{"token": "x"}]}],
    ids=["none", "empty", "no-tokens", "positive", "missing"],
)
def test_no_usable_logprobs_means_no_margin(logprobs: Any) -> None:
    assert answer_margin(logprobs, " Pool", [" Pool", " Room"], " Pool") is None
