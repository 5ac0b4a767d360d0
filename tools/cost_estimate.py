"""`python -m tools.cost_estimate`: the cost CLI (tools/cost/cli.py); the reasoning is in docs/cost-model.md."""

from __future__ import annotations

import sys

from tools.cost.backlog import INSTANCE_TYPES, estimate
from tools.cost.cli import main
from tools.cost.inputs import EstimateError, PhotoSize, SizeMix, parse_count, parse_size, scan_folder
from tools.cost.tokens import CHAT_TEMPLATE_TOKENS, estimate_text_tokens, gpt4o_image_tokens, llava_tokens

__all__ = [
    "CHAT_TEMPLATE_TOKENS",
    "INSTANCE_TYPES",
    "EstimateError",
    "PhotoSize",
    "SizeMix",
    "estimate",
    "estimate_text_tokens",
    "gpt4o_image_tokens",
    "llava_tokens",
    "main",
    "parse_count",
    "parse_size",
    "scan_folder",
]

if __name__ == "__main__":
    sys.exit(main())
