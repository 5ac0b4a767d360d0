"""Evaluate a fine-tuned model on the validation split the way the endpoint answers, constrained and free.

    python -m training_job.evaluate --model-dir MODEL_DIR --dataset DATASET_DIR --output-dir OUT
                                    [--taxonomy FILE] [--split validation] [--batch-size 8] [--limit N]
                                    [--confidence-threshold 0.8] [--min-accuracy 0.9]

Every photo is evaluated twice:
- constrained (the production path, and what the gate measures): the photo's stored JPEG goes into the exact
  request the Lambda sends (`Taxonomy.build_request`), is answered as the endpoint answers it
  (`training_job.constrained`: greedy decoding under vLLM's choice grammar, reproduced with xgrammar, logprobs
  computed after the grammar's mask as vLLM returns them), and the response is read by the Lambda's parser
  (`Taxonomy.parse_response`): a label and the Lambda's confidence, exp(sum of the answer's logprobs), i.e. the
  product of each answer token's probability among the tokens the grammar allowed at its step. A photo whose
  confidence is below `--confidence-threshold` (the production default 0.8) would be stored NEEDS_REVIEW instead
  of LABELED;
- unconstrained: greedy `generate()` from the same prompt, read by `Taxonomy.parse_label`. An answer that names no
  label counts as wrong and as invalid: how often the model would leave the taxonomy if the grammar did not hold
  it (a training-health figure; production cannot return such an answer).

Writes into OUT:
- `metrics.json`: the constrained figures at the top level (`accuracy`, `macro_f1`, per-class
  precision/recall/F1/support), the confidence figures (`confidence_definition`: what the confidence is,
  `confidence_threshold`, `below_threshold` and `below_threshold_share`: photos that would need review,
  `accuracy_at_or_above_threshold`: the accuracy of the photos labelled automatically, `confidence`: mean,
  quantiles and a 10-bin histogram), `invalid_answers` (the unconstrained count), `constrained_invalid_answers`
  (answers cut by `max_tokens`: the Lambda would retry them), `unconstrained` (its accuracy, macro-F1, invalid
  answers, per-class figures), timing; per-photo values are in predictions.jsonl, so metrics.json stays small for
  the pipeline's ReadMetrics state (Step Functions caps a state's data at 256 KiB);
- `confusion_matrix.png`: true label x constrained prediction;
- `predictions.jsonl`: one line per photo (index, true label, constrained prediction, confidence, whether it is
  below the threshold, the constrained answer, the unconstrained answer and the label it names or null).
It prints the per-class table and one `eval_<name>=<value>` line per metric for SageMaker metric definitions
(regex `eval_accuracy=([0-9.]+)` reads the constrained accuracy). `--min-accuracy` gates on the constrained
accuracy, the figure the pipeline's AccuracyGate also reads from metrics.json: the exit code is 3 when it is below
the bar (0: passed, 1: bad input, 3: below the bar).

Limits: one device (the first GPU, in bfloat16, else the CPU in float32), the weights loaded once for both passes;
the constrained pass decodes one photo at a time (`--batch-size` is the unconstrained pass's); the dataset's
prompt must match the taxonomy's (checked first).
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

from classification.contract import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_TAXONOMY_PATH,
    MAX_ANSWER_TOKENS,
    InvalidAnswer,
    Taxonomy,
)
from training_job.constrained import (
    CONFIDENCE_DEFINITION,
    ConstrainedDecoder,
    ModelLoadError,
    decode_image,
)

INVALID = "(invalid)"
EXIT_BAD_INPUT = 1
EXIT_BELOW_BAR = 3
HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class Sample:
    true_label: str
    predicted: str | None  # None: the answer named no label
    answer: str
    confidence: float | None = None  # the Lambda's, from logprobs after the grammar's mask (constrained pass only)


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


def confidence_metrics(samples: Sequence[Sample], threshold: float) -> dict[str, Any]:
    """What the Lambda's threshold would do with these answers: how many need review, how right the rest are.

    A photo is below the threshold when its confidence is missing or `< threshold`, exactly as the Lambda decides
    between NEEDS_REVIEW and LABELED.
    """
    confident = [s for s in samples if s.confidence is not None and s.confidence >= threshold]
    values = sorted(s.confidence for s in samples if s.confidence is not None)
    histogram = [0] * HISTOGRAM_BINS
    for value in values:
        histogram[min(int(value * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
    summary: dict[str, Any] = {"photos": len(values)}
    if values:
        summary.update(
            mean=round(sum(values) / len(values), 4),
            min=round(values[0], 4),
            p10=round(_quantile(values, 0.1), 4),
            median=round(_quantile(values, 0.5), 4),
        )
    # bins[i] counts confidences in [i/10, (i+1)/10), the last bin includes 1.0
    summary["histogram"] = {"bins": HISTOGRAM_BINS, "counts": histogram}
    below = len(samples) - len(confident)
    return {
        "confidence_threshold": threshold,
        "below_threshold": below,
        "below_threshold_share": below / len(samples) if samples else 0.0,
        "accuracy_at_or_above_threshold": (
            sum(s.predicted == s.true_label for s in confident) / len(confident) if confident else None
        ),
        "confidence": summary,
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    # Nearest-rank on the sorted values: no interpolation, so the figure is a confidence some photo really had.
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def confusion(samples: Sequence[Sample], labels: Sequence[str]) -> list[list[int]]:
    """Rows: true labels; columns: labels then INVALID."""
    columns = {label: i for i, label in enumerate([*labels, INVALID])}
    rows = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(columns) for _ in labels]
    for s in samples:
        matrix[rows[s.true_label]][columns[s.predicted or INVALID]] += 1
    return matrix


def plot_confusion(
    matrix: list[list[int]], labels: Sequence[str], path: Path, *, title: str, invalid_column: bool = True
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: training containers have no display
    import matplotlib.pyplot as plt

    if not invalid_column:
        matrix = [row[: len(labels)] for row in matrix]
    columns = [*labels, INVALID] if invalid_column else list(labels)
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
    if "confidence_threshold" in metrics:
        confident = metrics["accuracy_at_or_above_threshold"]
        lines.append(
            f"confidence below {metrics['confidence_threshold']}: {metrics['below_threshold']} of "
            f"{metrics['samples']} ({metrics['below_threshold_share']:.1%}, would need review); accuracy of the "
            f"rest {'n/a' if confident is None else format(confident, '.4f')}"
        )
    if "unconstrained" in metrics:
        free = metrics["unconstrained"]
        lines.append(
            f"unconstrained generation: accuracy {free['accuracy']:.4f}  macro-F1 {free['macro_f1']:.4f}  "
            f"invalid answers {free['invalid_answers']} of {metrics['samples']}"
        )
    return "\n".join(lines)


def _jpeg(image: dict[str, Any]) -> bytes:
    # A dataset from build_dataset embeds the normalised JPEG the Lambda would send; a path-only row is read.
    if image.get("bytes"):
        return image["bytes"]
    if image.get("path"):
        return Path(image["path"]).read_bytes()
    raise ValueError("a dataset row's image has neither bytes nor a path")


def _undecoded(rows: Any) -> Any:
    """The rows with their images as stored ({"bytes", "path"}): the constrained pass sends those exact bytes."""
    from datasets import Image, List

    return rows.cast_column("images", List(Image(decode=False)))


def generate_answers(
    decoder: ConstrainedDecoder,
    rows: Any,  # datasets.Dataset with images + messages, images undecoded
    taxonomy: Taxonomy,
    *,
    batch_size: int = 8,
    max_new_tokens: int = MAX_ANSWER_TOKENS,
    progress: bool = True,
) -> list[Sample]:
    """Unconstrained: greedy generate() for every row with the decoder's model and processor."""
    import torch
    from tqdm.auto import tqdm

    processor, model = decoder.processor, decoder.model
    prompt = processor.apply_chat_template(taxonomy.inference_messages(), add_generation_prompt=True)
    samples: list[Sample] = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="unconstrained", unit="batch", disable=not progress):
        batch = rows[start : start + batch_size]
        # The constrained pass's decoder (vLLM's): identical pixels in both passes.
        images = [decode_image(_jpeg(row_images[0])) for row_images in batch["images"]]
        # Generation continues from the right end of every row; the constrained pass never pads (one row).
        processor.tokenizer.padding_side = "left"
        # The chat template adds no BOS and neither does production (vLLM renders the same template).
        inputs = processor(
            images=images,
            text=[prompt] * len(images),
            padding=True,
            return_tensors="pt",
            add_special_tokens=False,
        ).to(decoder.device)
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


def decode_constrained(
    decoder: ConstrainedDecoder,
    rows: Any,  # datasets.Dataset with images + messages, images undecoded
    taxonomy: Taxonomy,
    *,
    progress: bool = True,
) -> list[Sample]:
    """Constrained: each photo through the Lambda's request, the endpoint's decoding, the Lambda's parser."""
    from tqdm.auto import tqdm

    samples: list[Sample] = []
    for index in tqdm(range(len(rows)), desc="constrained", unit="photo", disable=not progress):
        row = rows[index]
        decoded = decoder.answer(taxonomy.build_request(_jpeg(row["images"][0])))
        try:
            prediction = taxonomy.parse_response(decoded.response(str(decoder.model_dir)))
            predicted, confidence = prediction.label, prediction.confidence
        except InvalidAnswer:
            # Only a choice cut by max_tokens gets here: the Lambda would retry it and park it in the DLQ.
            predicted, confidence = None, None
        samples.append(Sample(true_label_of(row["messages"], taxonomy), predicted, decoded.content, confidence))
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
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the model on a split both ways; write metrics.json, confusion_matrix.png and predictions.jsonl."""
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
    rows = _undecoded(rows)

    decoder = ConstrainedDecoder(model_dir)  # one copy of the weights for both passes
    began = time.monotonic()
    constrained = decode_constrained(decoder, rows, taxonomy, progress=progress)
    constrained_seconds = time.monotonic() - began
    began = time.monotonic()
    free = generate_answers(decoder, rows, taxonomy, batch_size=batch_size, progress=progress)
    free_seconds = time.monotonic() - began

    metrics = compute_metrics(constrained, taxonomy)
    free_metrics = compute_metrics(free, taxonomy)
    metrics.update(confidence_metrics(constrained, confidence_threshold))
    metrics.update(
        confidence_definition=CONFIDENCE_DEFINITION,
        constrained_invalid_answers=metrics["invalid_answers"],
        invalid_answers=free_metrics["invalid_answers"],
        unconstrained=free_metrics,
        gate="accuracy: constrained to the taxonomy's choices, as production answers",
        model_dir=str(model_dir),
        dataset=str(dataset_dir),
        split=split,
        seconds=round(constrained_seconds + free_seconds, 2),
        photos_per_second=round(len(constrained) / constrained_seconds, 3) if constrained_seconds else None,
        unconstrained_photos_per_second=round(len(free) / free_seconds, 3) if free_seconds else None,
    )
    del free_metrics["samples"]  # the same photos: one count at the top level
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    with (output / "predictions.jsonl").open("w", encoding="utf-8") as file:
        for index, (s, f) in enumerate(zip(constrained, free, strict=True)):
            record = {
                "index": index,
                "true": s.true_label,
                "predicted": s.predicted,
                "confidence": s.confidence,
                "below_threshold": s.confidence is None or s.confidence < confidence_threshold,
                "answer": s.answer,
                "unconstrained_predicted": f.predicted,
                "unconstrained_answer": f.answer,
            }
            file.write(json.dumps(record) + "\n")
    labels = [label for label in taxonomy.labels if label in metrics["per_class"]]
    title = f"{split}, constrained: accuracy {metrics['accuracy']:.3f}, n={len(constrained)}"
    matrix = confusion(constrained, labels)
    plot_confusion(matrix, labels, output / "confusion_matrix.png", title=title, invalid_column=False)
    return metrics


def _dataset_taxonomy(dataset_dir: Path) -> Path:
    saved = dataset_dir / "taxonomy.json"
    return saved if saved.is_file() else DEFAULT_TAXONOMY_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training_job.evaluate",
        description="Evaluate a saved model on a dataset split the way production asks it (constrained) and free.",
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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="photos per generate() call of the unconstrained pass (default 8)",
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N photos")
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=DEFAULT_CONFIDENCE_THRESHOLD,
        help="report the share of photos whose constrained answer's probability is below this, i.e. that the "
        f"Lambda would store as NEEDS_REVIEW (0..1, default {DEFAULT_CONFIDENCE_THRESHOLD}, production's default)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=None,
        help=f"exit with code {EXIT_BELOW_BAR} when the constrained (production) accuracy is below this (0..1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size and --limit must be positive")
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        parser.error("--min-accuracy is a fraction between 0 and 1")
    if not 0 <= args.confidence_threshold <= 1:
        parser.error("--confidence-threshold is a probability between 0 and 1")
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
            confidence_threshold=args.confidence_threshold,
            progress=not args.no_progress,
        )
    except (OSError, ValueError, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_table(metrics))
    for name in ("accuracy", "macro_f1", "below_threshold_share", "invalid_answers"):
        print(f"eval_{name}={metrics[name]}")
    print(f"eval_unconstrained_accuracy={metrics['unconstrained']['accuracy']}")
    print(f"wrote {args.output_dir / 'metrics.json'} and {args.output_dir / 'confusion_matrix.png'}")
    if args.min_accuracy is not None and metrics["accuracy"] < args.min_accuracy:
        print(
            f"constrained accuracy {metrics['accuracy']:.4f} is below the bar {args.min_accuracy}", file=sys.stderr
        )
        return EXIT_BELOW_BAR
    return 0


if __name__ == "__main__":
    sys.exit(main())
