"""The local backend scores a request's choices as vLLM reads them: the prompt, then each choice's text verbatim.

(How much a trained model prefers the taxonomy's choices over the same text without the leading space is
measured in tests/training_job/test_evaluate.py, where the trained tiny model lives.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from serving_testkit import jpeg

from classification.contract import Taxonomy
from model_code.chat_protocol import parse_request


def _scored_tokens(scorer: Any, taxonomy: Taxonomy, choice: str) -> list[str]:
    body = taxonomy.build_request(jpeg()) | {"structured_outputs": {"choice": [choice]}}
    return [token.token for token in scorer.answer(parse_request(json.dumps(body).encode())).tokens]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> Any:
    from model_code.choice_scorer import ChoiceScorer

    return ChoiceScorer(tiny_model_dir)


def test_the_taxonomys_choice_is_scored_as_exactly_the_tokens_training_taught(
    scorer: Any, taxonomy: Taxonomy
) -> None:
    # Given the tokens a training row teaches after the prompt: the chat template's rendering, tokenized whole
    tokenizer = scorer.tokenizer
    prompt = scorer.render_prompt(taxonomy.inference_messages())
    row = scorer.processor.apply_chat_template(taxonomy.training_messages("Pool"), tokenize=False)
    row_ids = tokenizer(row, add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert row_ids[: len(prompt_ids)] == prompt_ids
    taught = row_ids[len(prompt_ids) :]
    taught = taught[: taught.index(tokenizer.eos_token_id) + 1]  # the template's trailing space is never learnt

    # When the scorer scores the taxonomy's choice for that label, and the same words without the leading space
    with_space = _scored_tokens(scorer, taxonomy, taxonomy.completion("Pool"))
    without_space = _scored_tokens(scorer, taxonomy, taxonomy.answer("Pool"))

    # Then the choice is scored as the taught tokens, EOS included; the other text is not re-rendered into them
    assert with_space == [tokenizer.decode([token_id]) for token_id in taught]
    assert with_space[0].startswith(" ")
    assert without_space != with_space
    assert "".join(without_space[:-1]) == taxonomy.answer("Pool")  # the literal text, then EOS
    assert without_space[-1] == tokenizer.eos_token
