"""The margin between the answer and the runner-up label, from the logprobs vLLM returns under the choice grammar.

What the response holds (measured on vLLM 0.32's CPU engine, tests/classification/data/vllm_responses.json): for
every generated token, its logprob and the `top_logprobs` alternatives, all computed after the choice grammar's
mask. Tokens the grammar allows carry their probability renormalised over the allowed tokens; masked tokens come
back with vLLM's floor -9999.0 (`max(logprob, -9999.0)` in vllm/entrypoints/openai/chat_completion/serving.py)
when the list has room for them. A forced token (one allowed) has logprob 0.0. The grammar also allows other
tokenisations of the same text (" th" + "is" for " this"), so an alternative token is not always another label.

Definition. p1 is the answer's probability, exp(sum of its token logprobs) (the confidence). The runner-up bound
p2 is, over the answer's steps t, the largest

    exp(sum of the answer's logprobs before t) x (probability of the best alternative at t that can lead to
                                                  another label)

where an alternative can lead to another label unless the text it spells (the answer's text before t plus the
token's text) starts no choice but the answer's own. Alternatives missing from the list are bounded by the
smallest listed probability and by the mass the list leaves (1 - sum of the listed), or by 0 once a masked entry
shows the list holds every allowed token. Every other label branches off the answer at some step with some
token, and its probability is at most the branch's, so p2 bounds the runner-up label's probability from above;
it is exact when the labels part at one token that the list names and the runner-up's remaining tokens are
forced. `margin = p1 - p2`, within [-1, 1]: 1 is an answer with no rival, values near 0 or below mean the model
could as well have said another label. When the token texts do not spell the answer (a tokenizer whose pieces
do not concatenate), every alternative counts, which only lowers the margin.

With `top_logprobs` 1 (the fine-tune profile, whose request must not change) the list holds the answer's own
token only and each step's rival is bounded by 1 - p(token): a coarser, still safe, margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# vLLM's floor for a -inf logprob: a token the grammar masked.
MASKED_LOGPROB = -9999.0


@dataclass(frozen=True)
class _Step:
    token: str
    logprob: float
    alternatives: tuple[tuple[str, float], ...]  # (token, logprob) as listed, the answer's own token included


def answer_margin(logprobs: Any, content: str, choices: Sequence[str], answer_choice: str) -> float | None:
    """p1 - p2 (module docstring) for an answer whose text is `content` and whose choice is `answer_choice`.

    None without usable logprobs (no `content` list, or a token without a numeric logprob <= 0).
    """
    steps = _steps(logprobs)
    if steps is None:
        return None
    spelled = _spells(steps, content)
    p1 = math.exp(sum(step.logprob for step in steps))
    runner_up = 0.0
    before = 0.0  # the answer's log-probability before the current step
    text = ""  # the answer's text before the current step
    for step in steps:
        rival = _best_rival(step, text if spelled else None, choices, answer_choice)
        runner_up = max(runner_up, math.exp(before) * rival)
        before += step.logprob
        if spelled and text != content:
            text += step.token
    return p1 - runner_up


def _steps(logprobs: Any) -> list[_Step] | None:
    if not isinstance(logprobs, Mapping):
        return None
    tokens = logprobs.get("content")
    if not isinstance(tokens, list) or not tokens:
        return None
    steps = []
    for token in tokens:
        if not isinstance(token, Mapping):
            return None
        value = token.get("logprob")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value > 0:
            return None
        listed = []
        for alternative in token.get("top_logprobs") or []:
            alt_value = alternative.get("logprob") if isinstance(alternative, Mapping) else None
            if isinstance(alt_value, (int, float)) and not isinstance(alt_value, bool):
                listed.append((str(alternative.get("token", "")), float(alt_value)))
        steps.append(_Step(str(token.get("token", "")), float(value), tuple(listed)))
    return steps


def _spells(steps: Sequence[_Step], content: str) -> bool:
    """Whether the tokens' texts concatenate to the answer (stop tokens after it aside)."""
    text = ""
    for step in steps:
        if text == content:
            break  # the stop token(s): not part of the answer's text
        text += step.token
        if not content.startswith(text):
            return False
    return text == content


def _best_rival(step: _Step, text: str | None, choices: Sequence[str], answer_choice: str) -> float:
    """The largest probability at this step that can lead to a label other than the answer's."""
    allowed = [(token, value) for token, value in step.alternatives if value > MASKED_LOGPROB]
    complete = len(allowed) < len(step.alternatives)  # a masked entry: every allowed token is listed
    others = list(allowed)
    for index, (token, value) in enumerate(others):
        if token == step.token and math.isclose(value, step.logprob, abs_tol=1e-9):
            del others[index]  # the answer's own token
            break
    best = 0.0
    for token, value in others:
        if text is not None and _only_the_answer(text + token, choices, answer_choice):
            continue  # another spelling of the same answer
        best = max(best, math.exp(value))
    if not complete:
        known = math.exp(step.logprob) + sum(math.exp(value) for _, value in others)
        smallest = min([math.exp(step.logprob), *(math.exp(value) for _, value in others)])
        best = max(best, min(max(0.0, 1.0 - known), smallest))
    return best


def _only_the_answer(prefix: str, choices: Sequence[str], answer_choice: str) -> bool:
    starts = [choice for choice in choices if choice.startswith(prefix)]
    return bool(starts) and all(choice == answer_choice for choice in starts)


__all__ = ["MASKED_LOGPROB", "answer_margin"]
