"""Evaluate a fine-tuned model on the validation split with the production prompt and parser.

    python -m training_job.evaluate --model-dir MODEL_DIR --dataset DATASET_DIR --output-dir OUT
                                    [--taxonomy FILE] [--split validation] [--batch-size 8] [--min-accuracy 0.9]

Each photo is asked exactly what the endpoint is asked: `Taxonomy.inference_messages()` rendered by the saved
processor's chat template, greedy decoding, the answer read by `Taxonomy.parse_label`. An answer that names no
label of the taxonomy counts as wrong and as invalid (production constrains vLLM to the label choices, so this
is the stricter measure). Writes into OUT:
- `metrics.json`: accuracy, macro-F1 (over labels present in the truth or the predictions), per-class
  precision/recall/F1/support, invalid-answer count, timing;
- `confusion_matrix.png`: true label x predicted label (plus an "(invalid)" column);
- `predictions.jsonl`: one line per photo (index, true label, predicted label or null, raw answer).
It prints the per-class table and one `eval_accuracy=...` line per metric for SageMaker metric definitions
(regex `eval_accuracy=([0-9.]+)`). With `--min-accuracy`, the exit code is 3 when accuracy is below the bar
(0: passed, 1: bad input, 3: below the bar), so a pipeline can gate on it.

Limits: one device (the first GPU, else CPU); the dataset's prompt must match the taxonomy's (checked first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classification.contract import DEFAULT_TAXONOMY_PATH, MAX_ANSWER_TOKENS, InvalidAnswer, Taxonomy

INVALID = "(invalid)"
EXIT_BAD_INPUT = 1
EXIT_BELOW_BAR = 3


@dataclass(frozen=True)
class Sample:
    true_label: str
    predicted: str | None  # None: the answer named no label
    answer: str


def true_label_of(messages: Sequence[dict[str, Any]], taxonomy: Taxonomy) -> str:
    """The label a dataset row teaches: its assistant answer, read with the production parser."""
    for message in messages:
        if message["role"] == "assistant":
            return taxonomy.parse_label(message["content"][0]["text"])
    raise ValueError("dataset row has no assistant message")


def check_prompt(messages: Sequence[dict[str, Any]], taxonomy: Taxonomy) -> None:
    texts = [part.get("text") for m in messages if m["role"] == "user" for part in m["content"]]
    if taxonomy.prompt not in texts:
        raise ValueError(
            "the dataset was built with a different taxonomy or prompt than the one given: evaluate with the "
            "taxonomy file used by build_dataset (--taxonomy)"
        )


def compute_metrics(samples: Sequence[Sample], taxonomy: Taxonomy) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support; invalid answers count as wrong."""
    total = len(samples)
    correct = sum(s.predicted == s.true_label for s in samples)
    invalid = sum(s.predicted is None for s in samples)
    support = Counter(s.true_label for s in samples)
    predicted = Counter(s.predicted for s in samples if s.predicted is not None)
    hits = Counter(s.true_label for s in samples if s.predicted == s.true_label)
    per_class: dict[str, dict[str, float | int]] = {}
    for label in taxonomy.labels:
        if not support[label] and not predicted[label]:
            continue  # absent from the split and never predicted: no evidence either way
        precision = hits[label] / predicted[label] if predicted[label] else 0.0
        recall = hits[label] / support[label] if support[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support[label]}
    macro_f1 = sum(c["f1"] for c in per_class.values()) / len(per_class) if per_class else 0.0
    return {
        "samples": total,
        "accuracy": correct / total if total else 0.0,
        "macro_f1": macro_f1,
        "invalid_answers": invalid,
        "per_class": per_class,
    }


def confusion(samples: Sequence[Sample], labels: Sequence[str]) -> list[list[int]]:
    """Rows: true labels; columns: labels then INVALID."""
    columns = {label: i for i, label in enumerate([*labels, INVALID])}
    rows = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(columns) for _ in labels]
    for s in samples:
        matrix[rows[s.true_label]][columns[s.predicted or INVALID]] += 1
    return matrix


def plot_confusion(matrix: list[list[int]], labels: Sequence[str], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: training containers have no display
    import matplotlib.pyplot as plt

    columns = [*labels, INVALID]
    size = max(4.0, 0.45 * len(columns) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                colour = "white" if value > peak / 2 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(metrics: dict[str, Any]) -> str:
    per_class = metrics["per_class"]
    width = max([len("label"), *(len(label) for label in per_class)])
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for label, c in per_class.items():
        lines.append(
            f"{label:<{width}}  {c['precision']:>9.3f}  {c['recall']:>6.3f}  {c['f1']:>5.3f}  {c['support']:>7}"
        )
    lines.append(
        f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
        f"invalid answers {metrics['invalid_answers']} of {metrics['samples']}"
    )
    return "\n".join(lines)


def predict(
    model_dir: str | Path,
    rows: Any,  # datasets.Dataset with images + messages
    taxonomy: Taxonomy,
    *,
    batch_size: int = 8,
    max_new_tokens: int = MAX_ANSWER_TOKENS,
    progress: bool = True,
) -> list[Sample]:
    """Generate an answer for every row with the saved model and processor (greedy)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"  # generation continues from the right end of every row
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    prompt = processor.apply_chat_template(taxonomy.inference_messages(), add_generation_prompt=True)

    samples: list[Sample] = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="evaluating", unit="batch", disable=not progress):
        batch = rows[start : start + batch_size]
        images = [row_images[0] for row_images in batch["images"]]
        # The chat template adds no BOS and neither does production (vLLM renders the same template).
        inputs = processor(
            images=images,
            text=[prompt] * len(images),
            padding=True,
            return_tensors="pt",
            add_special_tokens=False,
        ).to(device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=processor.tokenizer.pad_token_id,
            )
        answers = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for messages, answer in zip(batch["messages"], answers, strict=True):
            try:
                predicted: str | None = taxonomy.parse_label(answer)
            except InvalidAnswer:
                predicted = None
            samples.append(Sample(true_label_of(messages, taxonomy), predicted, answer))
    return samples


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    output_dir: str | Path,
    *,
    taxonomy: Taxonomy,
    split: str = "validation",
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the model on a split; write metrics.json, confusion_matrix.png and predictions.jsonl."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(dataset_dir))
    if split not in dataset:
        raise ValueError(f"dataset {dataset_dir} has no split {split!r} (it has {', '.join(dataset)})")
    rows = dataset[split]
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    if len(rows) == 0:
        raise ValueError(f"split {split!r} of {dataset_dir} is empty: nothing to evaluate")
    check_prompt(rows[0]["messages"], taxonomy)

    began = time.monotonic()
    samples = predict(model_dir, rows, taxonomy, batch_size=batch_size, progress=progress)
    seconds = time.monotonic() - began

    metrics = compute_metrics(samples, taxonomy)
    metrics.update(
        model_dir=str(model_dir),
        dataset=str(dataset_dir),
        split=split,
        seconds=round(seconds, 2),
        photos_per_second=round(len(samples) / seconds, 3) if seconds else None,
    )
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    with (output / "predictions.jsonl").open("w", encoding="utf-8") as file:
        for index, s in enumerate(samples):
            record = {"index": index, "true": s.true_label, "predicted": s.predicted, "answer": s.answer}
            file.write(json.dumps(record) + "\n")
    labels = [label for label in taxonomy.labels if label in metrics["per_class"]]
    title = f"{split}: accuracy {metrics['accuracy']:.3f}, n={len(samples)}"
    plot_confusion(confusion(samples, labels), labels, output / "confusion_matrix.png", title=title)
    return metrics


def _dataset_taxonomy(dataset_dir: Path) -> Path:
    saved = dataset_dir / "taxonomy.json"
    return saved if saved.is_file() else DEFAULT_TAXONOMY_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training_job.evaluate",
        description="Evaluate a saved model on a dataset split with the production prompt and answer parser.",
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="saved model (training output)")
    parser.add_argument("--dataset", required=True, type=Path, help="DatasetDict from training_job.build_dataset")
    parser.add_argument("--output-dir", required=True, type=Path, help="where metrics.json and the PNG go")
    parser.add_argument(
        "--taxonomy",
        type=Path,
        default=None,
        help="taxonomy JSON (default: the dataset's taxonomy.json written by build_dataset, else the shipped one)",
    )
    parser.add_argument("--split", default="validation", help="split to evaluate (default validation)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per generate() call (default 8)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N photos")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=None,
        help=f"exit with code {EXIT_BELOW_BAR} when accuracy is below this value (0..1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size and --limit must be positive")
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        parser.error("--min-accuracy is a fraction between 0 and 1")
    try:
        taxonomy = Taxonomy.load(args.taxonomy or _dataset_taxonomy(args.dataset))
        metrics = evaluate(
            args.model_dir,
            args.dataset,
            args.output_dir,
            taxonomy=taxonomy,
            split=args.split,
            batch_size=args.batch_size,
            limit=args.limit,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_table(metrics))
    for name in ("accuracy", "macro_f1", "invalid_answers"):
        print(f"eval_{name}={metrics[name]}")
    print(f"wrote {args.output_dir / 'metrics.json'} and {args.output_dir / 'confusion_matrix.png'}")
    if args.min_accuracy is not None and metrics["accuracy"] < args.min_accuracy:
        print(f"accuracy {metrics['accuracy']:.4f} is below the bar {args.min_accuracy}", file=sys.stderr)
        return EXIT_BELOW_BAR
    return 0


if __name__ == "__main__":
    sys.exit(main())
