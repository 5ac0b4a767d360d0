"""How good is the cost tool's tokenizer-free text estimate? Prints estimate vs Mistral's real tokenizer.

    pip install sentencepiece==0.2.3 mistral-common==1.13.1   # in a scratch venv: not a project dependency
    python benchmarks/bench_cost_text_tokens.py

`tools.cost_estimate` counts the prompt and answer text at 3.3 characters per token because the Lambda and the
CI have no tokenizer (the Hugging Face Hub is unreachable). This script measures that shortcut against
`tokenizer.model.v1`, the SentencePiece model that mistral-common ships and llava-v1.6-mistral-7b-hf uses
(Mistral-7B's 32,000-token vocabulary): the shared 26-label prompt, its 26 answers, the chat template pieces,
and 620 random taxonomies of 10-40 labels drawn from the 26 labels plus 20 plausible extras.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classification.contract import Taxonomy
from tools.cost_estimate import CHAT_TEMPLATE_TOKENS, estimate_text_tokens

EXTRA_LABELS = (
    "Meeting Room", "Kids Club", "Garden", "Beach", "Golf Course", "Casino", "Library", "Balcony", "Kitchen",
    "View", "Swimming pool (indoor)", "Breakfast area", "Spa & Wellness", "Reception desk", "Bedroom",
    "Living room", "Ski slope", "Tennis court", "Night club", "Playground",
)  # fmt: skip


def main() -> int:
    try:
        import sentencepiece
        from mistral_common import __file__ as mistral_common_init
    except ImportError:
        print(__doc__)
        print("sentencepiece and mistral-common are not installed; see the command above.")
        return 1
    model = Path(mistral_common_init).parent / "data" / "tokenizer.model.v1"
    tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(model))

    def real(text: str) -> int:
        return len(tokenizer.encode(text))

    taxonomy = Taxonomy.load()
    prompt = taxonomy.prompt
    print(f"26-label prompt: {len(prompt)} chars, {real(prompt)} tokens, estimate {estimate_text_tokens(prompt)}")
    answers = [(real(choice), estimate_text_tokens(choice)) for choice in taxonomy.choices]
    print(
        f"answers: real {min(a for a, _ in answers)}-{max(a for a, _ in answers)} tokens "
        f"(mean {statistics.mean(a for a, _ in answers):.2f}), estimate mean "
        f"{statistics.mean(e for _, e in answers):.2f} (+1 </s> each in the tool)"
    )
    # The template around the image: "[INST] " before it, "\n{prompt} [/INST]" after it, plus BOS.
    before = real("[INST] ")
    after = real("\n" + prompt + " [/INST]") - real(prompt)
    total = 1 + before + after
    print(f"chat template: BOS 1 + {before} + {after} = {total} tokens (tool uses {CHAT_TEMPLATE_TOKENS})")

    rng = random.Random(7)
    pool = list(taxonomy.labels) + list(EXTRA_LABELS)
    errors = []
    for size in range(10, 41):
        for _ in range(20):
            text = Taxonomy(tuple(rng.sample(pool, size))).prompt
            errors.append((estimate_text_tokens(text) - real(text)) / real(text))
    print(
        f"{len(errors)} random 10-40-label prompts: estimate error mean {statistics.mean(errors):+.1%}, "
        f"min {min(errors):+.1%}, max {max(errors):+.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
