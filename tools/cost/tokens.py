"""Tokens per photo without a tokenizer: exact LLaVA-NeXT image arithmetic plus estimated prompt/answer text."""

from __future__ import annotations

import math
from dataclasses import dataclass

from classification.contract import Taxonomy
from classification.image_tokens import fit_within, image_tokens
from tools.cost.inputs import SizeMix

# -- text tokens without a tokenizer ----------------------------------------------------------------------------
MISTRAL_CHARS_PER_TOKEN = 3.3  # measured on our prompt with Mistral's tokenizer.model.v1 (421 chars, 129 tokens)
CHAT_TEMPLATE_TOKENS = 11  # BOS + "[INST] " (4) + "\n" after the image (2) + " [/INST]" (4), same tokenizer
END_OF_ANSWER_TOKENS = 1  # </s>

# -- GPT-4o comparison ------------------------------------------------------------------------------------------
GPT4O_USD_PER_M_INPUT = 2.50
GPT4O_USD_PER_M_OUTPUT = 10.00
GPT4O_CHARS_PER_TOKEN = 4.0  # OpenAI's rule of thumb for English (o200k tokenizer)
GPT4O_BASE_TOKENS = 85
GPT4O_TILE_TOKENS = 170
GPT4O_TILE_SIDE = 512  # px


def estimate_text_tokens(text: str, chars_per_token: float = MISTRAL_CHARS_PER_TOKEN) -> int:
    return math.ceil(len(text) / chars_per_token)


@dataclass(frozen=True)
class TokenBudget:
    image: float  # mean over the size mix
    prompt_text: int
    answer: float  # mean over the taxonomy's answers

    @property
    def total(self) -> float:
        return self.image + self.prompt_text + self.answer


def llava_tokens(sizes: SizeMix, profile: str, taxonomy: Taxonomy, *, max_side: int) -> TokenBudget:
    def tokens_of(width: int, height: int) -> int:
        return image_tokens(*fit_within(width, height, max_side), profile)

    answers = [estimate_text_tokens(choice) + END_OF_ANSWER_TOKENS for choice in taxonomy.choices]
    return TokenBudget(
        image=sizes.mean(tokens_of),
        prompt_text=CHAT_TEMPLATE_TOKENS + estimate_text_tokens(taxonomy.prompt),
        answer=sum(answers) / len(answers),
    )


def gpt4o_image_tokens(width: int, height: int, detail: str) -> int:
    """GPT-4o's own image accounting: 85 at detail=low; at high, 85 + 170 per 512-px tile after scaling."""
    if detail == "low":
        return GPT4O_BASE_TOKENS
    scaled_w, scaled_h = float(width), float(height)
    if max(scaled_w, scaled_h) > 2048:  # first fit within 2048 x 2048
        factor = 2048 / max(scaled_w, scaled_h)
        scaled_w, scaled_h = scaled_w * factor, scaled_h * factor
    if min(scaled_w, scaled_h) > 768:  # then the short side down to 768
        factor = 768 / min(scaled_w, scaled_h)
        scaled_w, scaled_h = scaled_w * factor, scaled_h * factor
    tiles = math.ceil(scaled_w / GPT4O_TILE_SIDE) * math.ceil(scaled_h / GPT4O_TILE_SIDE)
    return GPT4O_BASE_TOKENS + GPT4O_TILE_TOKENS * tiles
