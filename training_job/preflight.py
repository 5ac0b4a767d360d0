"""Checks, in seconds, what would otherwise fail (or silently mistrain) hours into a booked training job.

    python -m training_job.preflight --model MODEL_DIR_OR_HUB_ID --dataset DATASET_DIR [--rows 16]

`training_job/launch.py` runs it on every host before `accelerate launch`; by hand, run it before submitting a
job. One line per check, then a verdict; exit code 0 when every check passes, 1 when one fails, 2 for bad input.

1. chat template: the base processor's template is byte-identical to TRL's LLaVA-NeXT template
   (`trl.chat_template_utils.llava_next_chat_template`). TRL's assistant-only loss recognises templates by exact
   text to swap in its training twin (with `{% generation %}` markers); any other template either stops the
   trainer or, worse, trains on a prompt layout that serving does not send. A base without a template is fine:
   training sets TRL's.
2. dataset rows: rows spread over every split render with that template through the processor exactly as TRL's
   collator renders them (images included); each must carry image tokens and a non-empty answer mask (the
   tokens the loss is computed on), and the masked tokens must be the row's answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_ROWS = 16  # per split; enough to catch a broken builder, cheap enough to stay in seconds


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def _first_difference(actual: str, expected: str) -> str:
    index = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), None)
    if index is None:
        index = min(len(actual), len(expected))
    line = actual.count("\n", 0, index) + 1
    return (
        f"first difference at character {index} (line {line}): base has {actual[index : index + 40]!r}, "
        f"TRL expects {expected[index : index + 40]!r}"
    )


def check_chat_template(processor: Any) -> CheckResult:
    """The template training will render with is TRL's LLaVA-NeXT template, byte for byte."""
    from trl.chat_template_utils import llava_next_chat_template

    name = "chat template"
    template = processor.chat_template
    if not template:
        return CheckResult(name, True, "the base ships none; training sets TRL's LLaVA-NeXT template")
    if not isinstance(template, str):
        return CheckResult(name, False, f"the base ships named templates {sorted(template)}, not one template")
    if template == llava_next_chat_template:
        return CheckResult(name, True, f"byte-identical to TRL's LLaVA-NeXT template ({len(template)} characters)")
    return CheckResult(
        name,
        False,
        "differs from TRL's LLaVA-NeXT template, so assistant-only loss cannot mask the answer; "
        + _first_difference(template, llava_next_chat_template),
    )


def _sample_indices(size: int, rows: int) -> list[int]:
    if size <= rows:
        return list(range(size))
    # Spread over the split: a builder bug often hits one label's block, and rows are grouped by label.
    return sorted({round(i * (size - 1) / (rows - 1)) for i in range(rows)}) if rows > 1 else [0]


def check_dataset_rows(processor: Any, dataset: Any, *, rows: int = DEFAULT_ROWS) -> CheckResult:
    """Rows of every split render as TRL's collator renders them, with image tokens and an answer mask."""
    from trl.chat_template_utils import get_training_chat_template, llava_next_chat_template
    from trl.data_utils import prepare_multimodal_messages

    name = "dataset rows"
    if not processor.chat_template:
        processor.chat_template = llava_next_chat_template  # what training does for a base without one
    try:
        template = get_training_chat_template(processor) or processor.chat_template
    except ValueError as error:
        return CheckResult(name, False, f"TRL has no training template for the base's chat template ({error})")
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    checked, image_tokens, answer_tokens = [], set(), set()
    for split in sorted(dataset):
        table = dataset[split]
        missing = {"images", "messages"} - set(table.column_names)
        if missing:
            return CheckResult(name, False, f"split {split!r} has no {sorted(missing)} column(s)")
        for index in _sample_indices(len(table), rows):
            row = table[index]
            where = f"{split}[{index}]"
            try:
                messages = prepare_multimodal_messages(row["messages"], images=row["images"])
                output = processor.apply_chat_template(
                    [messages],
                    chat_template=template,
                    tokenize=True,
                    return_dict=True,
                    return_tensors="pt",
                    return_assistant_tokens_mask=True,
                    processor_kwargs={"add_special_tokens": False, "padding": False, "truncation": False},
                )
            except Exception as error:  # any rendering error is this check's finding, with the row that caused it
                return CheckResult(name, False, f"{where} does not render: {type(error).__name__}: {error}")
            input_ids, mask = output["input_ids"][0], output["assistant_masks"][0].bool()
            images = int((input_ids == image_token_id).sum())
            if images == 0:
                return CheckResult(name, False, f"{where} renders no image token {processor.image_token!r}")
            if not bool(mask.any()):
                return CheckResult(name, False, f"{where} has an empty answer mask: the loss would see no token")
            answer = _assistant_text(row["messages"])
            supervised = processor.tokenizer.decode(input_ids[mask])
            if answer is not None and answer.strip() not in supervised:
                return CheckResult(
                    name, False, f"{where}: the masked tokens {supervised!r} are not the answer {answer!r}"
                )
            checked.append(where)
            image_tokens.add(images)
            answer_tokens.add(int(mask.sum()))
    if not checked:
        return CheckResult(name, False, "the dataset has no rows")
    return CheckResult(
        name,
        True,
        f"{len(checked)} rows over {len(dataset)} split(s) render with image tokens "
        f"({_span(image_tokens)} per row) and an answer mask ({_span(answer_tokens)} tokens)",
    )


def _assistant_text(messages: list[dict[str, Any]]) -> str | None:
    for message in messages:
        if message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return None


def _span(values: set[int]) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def run_checks(
    model: str, dataset_dir: str, *, revision: str | None = None, rows: int = DEFAULT_ROWS
) -> list[CheckResult]:
    from transformers import AutoProcessor

    from training_job.train import load_dataset_dict

    processor = AutoProcessor.from_pretrained(model, revision=revision)
    dataset = load_dataset_dict(dataset_dir)
    checks: list[Callable[[], CheckResult]] = [
        lambda: check_chat_template(processor),
        lambda: check_dataset_rows(processor, dataset, rows=rows),
    ]
    results = []
    for check in checks:
        result = check()
        print(result.line(), flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_job.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="base model: a local directory or a Hub id")
    parser.add_argument("--revision", default=None, help="Hub revision of the base model")
    parser.add_argument("--dataset", required=True, help="the DatasetDict written by training_job.build_dataset")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows rendered per split")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if not (Path(args.dataset) / "dataset_dict.json").is_file():
        print(
            f"error: {args.dataset} has no dataset_dict.json: not a DatasetDict from training_job.build_dataset",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    started = time.monotonic()
    try:
        results = run_checks(args.model, args.dataset, revision=args.revision, rows=args.rows)
    except OSError as error:  # the processor files cannot be found (offline, wrong path or id)
        print(f"error: cannot load the processor of {args.model}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    failed = [result for result in results if not result.passed]
    seconds = time.monotonic() - started
    if failed:
        print(
            f"FAIL  preflight: {len(failed)} of {len(results)} checks failed in {seconds:.1f} s; "
            "fix them before booking a training instance",
            flush=True,
        )
        return EXIT_FAILED
    print(f"PASS  preflight: {len(results)} checks passed in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
