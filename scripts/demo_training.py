"""The demos' training step: `python -m training_job.train` (the real config file plus CPU overrides) of a tiny
LLaVA-NeXT on generated photos, its progress on stdout, the rest in a log.

`train_model` is scripts/demo.py's step 1 (tiny model, photos, dataset, training); `run_training` alone is
scripts/demo_day_one.py's fine-tune of its staged base on the reviewed photos.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from classification.contract import Taxonomy
from local_aws.photos import write_training_photos
from local_aws.training import REPO_ROOT, TRAIN_CONFIG, cpu_training_args, subprocess_env
from scripts.demo_report import say


def train_model(
    workdir: Path,
    taxonomy: Taxonomy,
    *,
    per_label: int,
    epochs: int,
    seed: int,
    log: TextIO,
    batch_size: int = 4,
    learning_rate: float = 3e-3,
) -> Path:
    """Tiny model -> dataset -> `python -m training_job.train`; returns the servable model directory."""
    from training_job.build_dataset import build_dataset
    from training_job.tiny_model import build_tiny_model

    rng = np.random.default_rng(seed)
    base = build_tiny_model(workdir / "tiny-base", taxonomy, profile="compact")
    photos = write_training_photos(workdir / "training-photos", taxonomy, per_label, rng)
    dataset = workdir / "dataset"
    # build_dataset's default split holds back at least one photo per label (evaluation needs a validation split).
    report = build_dataset(str(photos), dataset, taxonomy=taxonomy, progress=False)
    say(f"      dataset: {report.train} training photos, {len(taxonomy.labels)} labels")
    return run_training(
        workdir,
        base,
        dataset,
        epochs=epochs,
        seed=seed,
        log=log,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )


def run_training(
    workdir: Path,
    base: Path,
    dataset: Path,
    *,
    epochs: int,
    seed: int,
    log: TextIO,
    batch_size: int = 4,
    learning_rate: float = 3e-3,
) -> Path:
    """`python -m training_job.train` of `base` on `dataset` (CPU settings), progress on stdout, the rest in `log`;
    returns the servable model directory (workdir/model)."""
    model_dir = workdir / "model"
    command = [
        sys.executable,
        "-m",
        "training_job.train",
        "--config",
        str(TRAIN_CONFIG),
        "--model_name_or_path",
        str(base),
        "--dataset_name",
        str(dataset),
        "--output_dir",
        str(workdir / "checkpoints"),
        "--final_model_dir",
        str(model_dir),
        "--image_token_profile",
        "compact",
        "--num_train_epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--per_device_train_batch_size",
        str(batch_size),
        # A constant rate: the seed's linear decay spends half of a short CPU run at a rate too small to matter.
        *cpu_training_args(learning_rate=learning_rate, lr_scheduler_type="constant"),
    ]
    log.write("$ " + " ".join(command) + "\n")
    log.flush()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            log.write(line)
            progress = _training_progress(line)
            if progress:
                say(progress)
    finally:
        if process.poll() is None and sys.exc_info()[0] is not None:
            process.kill()  # interrupted (Ctrl-C): never leave a training process behind
    if process.wait() != 0:
        log.flush()
        raise RuntimeError(f"training failed with exit code {process.returncode}; see {log.name}")
    return model_dir


def _training_progress(line: str) -> str | None:
    """The trainer's per-step log dict ({'loss': '0.41', 'epoch': '2.5', ...}) as one short progress line."""
    if not line.startswith("{'loss'"):
        return None
    try:
        values = ast.literal_eval(line.strip())
        return (
            f"      epoch {float(values['epoch']):5.2f}  loss {float(values['loss']):.3f}  "
            f"answer-token accuracy {float(values['mean_token_accuracy']):.2f}"
        )
    except (ValueError, SyntaxError, KeyError, TypeError):
        return None
