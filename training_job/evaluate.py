"""Evaluate a model (a fine-tune, or the staged base model) on labelled photos the way the endpoint answers.

    python -m training_job.evaluate --model-dir MODEL_DIR --dataset DATASET_DIR --output-dir OUT
                                    [--taxonomy FILE] [--split validation|all] [--batch-size 8] [--limit N]
                                    [--profile fine-tune|base|base-prefilled] [--confidence-threshold 0.8]
                                    [--margin-threshold M] [--baseline-model-dir SERVED_DIR [--baseline-profile P]]
                                    [--min-accuracy 0.9]

The model is asked in its profile (classification/model_profile.py: the request, the answer shape, the routing
rule), read from the `model_profile.json` beside its weights unless `--profile` names one (a directory without the
file is a fine-tune). Every photo is evaluated twice:
- constrained (the production path, and what the gates measure): the photo's stored JPEG goes into the exact
  request the Lambda sends (`Taxonomy.build_request(..., profile=)`), is answered as the endpoint answers it
  (`training_job.constrained`: greedy decoding under vLLM's choice grammar, reproduced with xgrammar, logprobs
  and top alternatives computed after the grammar's mask as vLLM returns them), and the response is read by the
  Lambda's parser (`Taxonomy.parse_response`): a label, the Lambda's confidence (exp(sum of the answer's
  logprobs)) and margin (the answer's probability minus a bound on the runner-up's: classification/margin.py);
- unconstrained: greedy `generate()` from the same prompt, read with the profile's answer parser. An answer that
  names no label counts as wrong and as invalid: how often the model would leave the taxonomy if the grammar did
  not hold it (a health figure; production cannot return such an answer).

With `--baseline-model-dir` (the model the endpoint serves now: the staged base model on day one) the same photos
are also answered by that model, constrained, in its own profile, and `metrics.json` gets `baseline`: its
accuracy, evidence histograms, how many photos only one of the two got right, `accuracy_gain` and `better`
(strictly higher accuracy), which the training pipeline's ServedModelGate reads: a fine-tune that is not better
than what is being served is not rolled out.

Writes into OUT:
- `metrics.json`: the constrained figures at the top level (`accuracy` with its 95 % Wilson interval, `macro_f1`,
  per-class precision/recall/F1/support, `thin_classes`: classes with fewer photos than the figures need), the
  evidence figures (`confidence_definition`; `confidence` and `margin`: mean, quantiles, a 10-bin histogram over
  [0, 1] and the count of negative margins; `confidence_threshold`, `below_threshold(_share)` and
  `accuracy_at_or_above_threshold` at the confidence threshold; `routing`: the profile's own rule at the given
  thresholds; `review_sweep`: the share that would go to review and the accuracy of the rest at each threshold,
  routing on confidence and on margin), `invalid_answers` (the unconstrained count), `constrained_invalid_answers`
  (answers cut by `max_tokens`: the Lambda would retry them), `unconstrained`, `baseline` (above), timing;
  per-photo values are in predictions.jsonl, so metrics.json stays small for the pipeline's ReadMetrics state (Step
  Functions caps a state's data at 256 KiB);
- `confusion_matrix.png`: true label x constrained prediction;
- `predictions.jsonl`: one line per photo (index, true label, constrained prediction, confidence, margin, whether
  its confidence is below the threshold, the constrained answer, the unconstrained answer and the label it names,
  and the baseline's prediction, confidence and margin).
It prints the per-class table, the review table and one `eval_<name>=<value>` line per metric for SageMaker metric
definitions (regex `eval_accuracy=([0-9.]+)` reads the constrained accuracy). `--min-accuracy` gates on the
constrained accuracy, the figure the pipeline's AccuracyGate also reads from metrics.json: the exit code is 3 when
it is below the bar (0: passed, 1: bad input, 3: below the bar).

Limits: one device (the first GPU, in bfloat16, else the CPU in float32); each model's weights are loaded once for
its passes and freed before the next model loads; the constrained pass decodes one photo at a time
(`--batch-size` is the unconstrained pass's); the dataset's prompt must match the taxonomy's (checked first).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from classification.contract import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_TAXONOMY_PATH,
    MAX_ANSWER_TOKENS,
    InvalidAnswer,
    Taxonomy,
)
from classification.model_profile import (
    PROFILES,
    AnswerShape,
    InvalidProfile,
    ModelProfile,
    profile_named,
    resolve_profile,
)
from training_job.constrained import (
    CONFIDENCE_DEFINITION,
    ConstrainedDecoder,
    ModelLoadError,
    decode_image,
)
from training_job.evaluation_report import (
    INVALID,
    Sample,
    baseline_comparison,
    check_prompt,
    compute_metrics,
    confidence_metrics,
    confusion,
    evidence_summary,
    format_table,
    plot_confusion,
    review_share,
    review_sweep,
    true_label_of,
)

EXIT_BAD_INPUT = 1
EXIT_BELOW_BAR = 3
ALL_SPLITS = "all"

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BELOW_BAR",
    "INVALID",
    "Sample",
    "check_prompt",
    "compute_metrics",
    "confidence_metrics",
    "confusion",
    "decode_constrained",
    "evaluate",
    "format_table",
    "generate_answers",
    "main",
    "true_label_of",
]


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
    profile: ModelProfile | None = None,
    batch_size: int = 8,
    max_new_tokens: int = MAX_ANSWER_TOKENS,
    progress: bool = True,
) -> list[Sample]:
    """Unconstrained: greedy generate() for every row with the decoder's model and processor, in the profile."""
    import torch
    from tqdm.auto import tqdm

    profile = profile or resolve_profile(decoder.model_dir)
    processor, model = decoder.processor, decoder.model
    prefilled = profile.shape is AnswerShape.PREFILLED
    prompt = processor.apply_chat_template(
        profile.messages(taxonomy, {"type": "image"}),
        add_generation_prompt=not prefilled,
        continue_final_message=prefilled,
    )
    samples: list[Sample] = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="unconstrained", unit="batch", disable=not progress):
        batch = rows[start : start + batch_size]
        # The constrained pass's decoder (vLLM's): identical pixels in both passes.
        images = [decode_image(_jpeg(row_images[0])) for row_images in batch["images"]]
        # Generation continues from the right end of every row; the constrained pass never pads (one row).
        processor.tokenizer.padding_side = "left"
        # The chat template adds no BOS; the profile says whether production asks vLLM to add one.
        inputs = processor(
            images=images,
            text=[prompt] * len(images),
            padding=True,
            return_tensors="pt",
            add_special_tokens=profile.add_bos,
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
                predicted: str | None = profile.label_of(taxonomy, answer)
            except InvalidAnswer:
                predicted = None
            samples.append(Sample(true_label_of(messages, taxonomy), predicted, answer))
    return samples


def decode_constrained(
    decoder: ConstrainedDecoder,
    rows: Any,  # datasets.Dataset with images + messages, images undecoded
    taxonomy: Taxonomy,
    *,
    profile: ModelProfile | None = None,
    progress: bool = True,
) -> list[Sample]:
    """Constrained: each photo through the Lambda's request, the endpoint's decoding, the Lambda's parser."""
    from tqdm.auto import tqdm

    profile = profile or resolve_profile(decoder.model_dir)
    samples: list[Sample] = []
    for index in tqdm(range(len(rows)), desc="constrained", unit="photo", disable=not progress):
        row = rows[index]
        decoded = decoder.answer(taxonomy.build_request(_jpeg(row["images"][0]), profile=profile))
        try:
            prediction = taxonomy.parse_response(decoded.response(str(decoder.model_dir)), profile=profile)
            predicted, confidence, margin = prediction.label, prediction.confidence, prediction.margin
        except InvalidAnswer:
            # Only a choice cut by max_tokens gets here: the Lambda would retry it and park it in the DLQ.
            predicted, confidence, margin = None, None, None
        truth = true_label_of(row["messages"], taxonomy)
        samples.append(Sample(truth, predicted, decoded.content, confidence, margin))
    return samples


def load_rows(dataset_dir: str | Path, split: str, limit: int | None) -> Any:
    """The split's rows (or every split's, `all`: a hand-labelled set is evaluation only), images undecoded."""
    from datasets import concatenate_datasets, load_from_disk

    dataset = load_from_disk(str(dataset_dir))
    if split == ALL_SPLITS:
        rows = concatenate_datasets([dataset[name] for name in dataset])
    elif split in dataset:
        rows = dataset[split]
    else:
        raise ValueError(f"dataset {dataset_dir} has no split {split!r} (it has {', '.join(dataset)}, or all)")
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    if len(rows) == 0:
        raise ValueError(f"split {split!r} of {dataset_dir} is empty: nothing to evaluate")
    return rows


def _answer_with(
    model_dir: Path, rows: Any, taxonomy: Taxonomy, profile: ModelProfile, *, unconstrained: bool, **options: Any
) -> tuple[list[Sample], list[Sample] | None, float, float]:
    """One model's passes; its weights are freed before returning (the next model needs the memory)."""
    decoder = ConstrainedDecoder(model_dir)  # one copy of the weights for both passes
    progress = options.get("progress", True)
    began = time.monotonic()
    constrained = decode_constrained(decoder, rows, taxonomy, profile=profile, progress=progress)
    constrained_seconds = time.monotonic() - began
    free, free_seconds = None, 0.0
    if unconstrained:
        began = time.monotonic()
        free = generate_answers(
            decoder, rows, taxonomy, profile=profile, batch_size=options["batch_size"], progress=progress
        )
        free_seconds = time.monotonic() - began
    del decoder
    gc.collect()
    return constrained, free, constrained_seconds, free_seconds


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
    margin_threshold: float | None = None,
    profile: ModelProfile | None = None,
    baseline_model_dir: str | Path | None = None,
    baseline_profile: ModelProfile | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the model on a split both ways (and the baseline constrained); write metrics, matrix, predictions."""
    rows = load_rows(dataset_dir, split, limit)
    check_prompt(rows[0]["messages"], taxonomy)
    rows = _undecoded(rows)
    model_dir = Path(model_dir)
    profile = profile or resolve_profile(model_dir)

    constrained, free, constrained_seconds, free_seconds = _answer_with(
        model_dir, rows, taxonomy, profile, unconstrained=True, batch_size=batch_size, progress=progress
    )
    assert free is not None
    baseline: list[Sample] | None = None
    if baseline_model_dir is not None:
        baseline_profile = baseline_profile or resolve_profile(baseline_model_dir)
        baseline, _, _, _ = _answer_with(
            Path(baseline_model_dir), rows, taxonomy, baseline_profile, unconstrained=False, progress=progress
        )

    metrics = compute_metrics(constrained, taxonomy)
    free_metrics = compute_metrics(free, taxonomy)
    metrics.update(confidence_metrics(constrained, confidence_threshold))
    rule = profile.routing_rule(confidence_threshold=confidence_threshold, margin_threshold=margin_threshold)
    metrics.update(
        profile=profile.name,
        confidence_definition=CONFIDENCE_DEFINITION,
        margin=evidence_summary([s.margin for s in constrained]),
        routing=review_share(constrained, rule),
        review_sweep=review_sweep(constrained, profile.name),
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
    if baseline is not None:
        assert baseline_profile is not None
        comparison = baseline_comparison(constrained, baseline, taxonomy)
        metrics["baseline"] = {
            "model_dir": str(baseline_model_dir),
            "profile": baseline_profile.name,
            **comparison,
        }
    del free_metrics["samples"]  # the same photos: one count at the top level
    _write_outputs(Path(output_dir), metrics, constrained, free, baseline, taxonomy, confidence_threshold, split)
    return metrics


def _write_outputs(
    output: Path,
    metrics: dict[str, Any],
    constrained: list[Sample],
    free: list[Sample],
    baseline: list[Sample] | None,
    taxonomy: Taxonomy,
    confidence_threshold: float,
    split: str,
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    with (output / "predictions.jsonl").open("w", encoding="utf-8") as file:
        for index, (s, f) in enumerate(zip(constrained, free, strict=True)):
            record = {
                "index": index,
                "true": s.true_label,
                "predicted": s.predicted,
                "confidence": s.confidence,
                "margin": s.margin,
                "below_threshold": s.confidence is None or s.confidence < confidence_threshold,
                "answer": s.answer,
                "unconstrained_predicted": f.predicted,
                "unconstrained_answer": f.answer,
            }
            if baseline is not None:
                b = baseline[index]
                record.update(
                    baseline_predicted=b.predicted, baseline_confidence=b.confidence, baseline_margin=b.margin
                )
            file.write(json.dumps(record) + "\n")
    labels = [label for label in taxonomy.labels if label in metrics["per_class"]]
    title = f"{split}, constrained: accuracy {metrics['accuracy']:.3f}, n={len(constrained)}"
    matrix = confusion(constrained, labels)
    plot_confusion(matrix, labels, output / "confusion_matrix.png", title=title, invalid_column=False)


def _dataset_taxonomy(dataset_dir: Path) -> Path:
    saved = dataset_dir / "taxonomy.json"
    return saved if saved.is_file() else DEFAULT_TAXONOMY_PATH


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training_job.evaluate",
        description="Evaluate a saved model on a dataset split the way production asks it (constrained) and free.",
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="saved model (training output or staged)")
    parser.add_argument("--dataset", required=True, type=Path, help="DatasetDict from training_job.build_dataset")
    parser.add_argument("--output-dir", required=True, type=Path, help="where metrics.json and the PNG go")
    parser.add_argument(
        "--taxonomy",
        type=Path,
        default=None,
        help="taxonomy JSON (default: the dataset's taxonomy.json written by build_dataset, else the shipped one)",
    )
    parser.add_argument(
        "--split",
        default="validation",
        help="split to evaluate (default validation); `all` evaluates every split (a hand-labelled set)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="photos per generate() call of the unconstrained pass (default 8)",
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N photos")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="ask the model in this profile (default: its model_profile.json, else fine-tune)",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=DEFAULT_CONFIDENCE_THRESHOLD,
        help="report the share of photos whose constrained answer's probability is below this, i.e. that the "
        f"Lambda would store as NEEDS_REVIEW (0..1, default {DEFAULT_CONFIDENCE_THRESHOLD}, production's default)",
    )
    parser.add_argument(
        "--margin-threshold",
        type=float,
        default=None,
        help="the base profiles' routing threshold to report (upload.base_margin_threshold; default: none, every "
        "answer to review)",
    )
    parser.add_argument(
        "--baseline-model-dir",
        type=Path,
        default=None,
        help="the model served now (e.g. the staged base model): answered on the same photos and compared",
    )
    parser.add_argument(
        "--baseline-profile",
        choices=sorted(PROFILES),
        default=None,
        help="the baseline's profile (default: its model_profile.json, else fine-tune)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=None,
        help=f"exit with code {EXIT_BELOW_BAR} when the constrained (production) accuracy is below this (0..1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--batch-size and --limit must be positive")
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        parser.error("--min-accuracy is a fraction between 0 and 1")
    if not 0 <= args.confidence_threshold <= 1:
        parser.error("--confidence-threshold is a probability between 0 and 1")
    if args.margin_threshold is not None and not 0 <= args.margin_threshold <= 1:
        parser.error("--margin-threshold is a difference of probabilities between 0 and 1")
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
            margin_threshold=args.margin_threshold,
            profile=profile_named(args.profile) if args.profile else None,
            baseline_model_dir=args.baseline_model_dir,
            baseline_profile=profile_named(args.baseline_profile) if args.baseline_profile else None,
            progress=not args.no_progress,
        )
    except (OSError, ValueError, ModelLoadError, InvalidProfile) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_table(metrics))
    for name in ("accuracy", "macro_f1", "below_threshold_share", "invalid_answers"):
        print(f"eval_{name}={metrics[name]}")
    print(f"eval_unconstrained_accuracy={metrics['unconstrained']['accuracy']}")
    if "baseline" in metrics:
        print(f"eval_baseline_accuracy={metrics['baseline']['accuracy']}")
    print(f"wrote {args.output_dir / 'metrics.json'} and {args.output_dir / 'confusion_matrix.png'}")
    if args.min_accuracy is not None and metrics["accuracy"] < args.min_accuracy:
        print(
            f"constrained accuracy {metrics['accuracy']:.4f} is below the bar {args.min_accuracy}", file=sys.stderr
        )
        return EXIT_BELOW_BAR
    return 0


if __name__ == "__main__":
    sys.exit(main())
