"""One source of truth for what the model is asked and how its answer is read (see contract.py)."""

from classification.contract import (
    DEFAULT_TAXONOMY_PATH,
    MAX_ANSWER_TOKENS,
    InvalidAnswer,
    InvalidTaxonomy,
    Prediction,
    Taxonomy,
)

__all__ = [
    "DEFAULT_TAXONOMY_PATH",
    "MAX_ANSWER_TOKENS",
    "InvalidAnswer",
    "InvalidTaxonomy",
    "Prediction",
    "Taxonomy",
]
