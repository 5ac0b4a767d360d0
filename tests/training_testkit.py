"""Helpers shared by the tests that train or serve a model (tests/conftest.py and the test modules import them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from local_aws import photos
from local_aws.lambda_runner import ENDPOINT_NAME
from local_aws.training import REPO_ROOT, cpu_training_args, subprocess_env

# One solid colour per label, with noise: learnable from pixels alone, so accuracy measures the pipeline.
COLOURS = {"Pool": (30, 80, 220), "Room": (220, 60, 40), "Bar": (40, 180, 60), "Lobby": (230, 220, 60)}
PHOTOS_PER_LABEL = 24
VALIDATION_FRACTION = 0.25
# A tiny random model needs a larger learning rate than the seed's 2e-5 to converge in three epochs.
CPU_TRAINING_ARGS = cpu_training_args(learning_rate=1e-3)


# A hang guard, not a speed check: the session's 3-epoch training takes minutes on 2 cores shared with other work.
CLI_TIMEOUT = 900  # seconds


def run_cli(
    args: list[str], *, timeout: int = CLI_TIMEOUT, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Its own process group: on a timeout the launcher's grandchildren (accelerate, the trainer) go too, instead of
    # training on as orphans and slowing every later test.
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**subprocess_env(), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def colour_photo(label: str, rng: np.random.Generator, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A noisy photo of the colour of `label` (one of COLOURS)."""
    return photos.colour_photo(COLOURS[label], rng, size)


# The endpoint name the session's vLLM server answers to on SageMaker Runtime's route (the demo's name).
SESSION_ENDPOINT_NAME = ENDPOINT_NAME


# transformers 4.57.1 (requirements-transformers4.txt), installed beside the venv's 5.x by `make setup`.
TRANSFORMERS_4 = REPO_ROOT / ".transformers4"
_READ_WITH_4X = """
import json, sys
import transformers
from transformers import AutoConfig
for folder in sys.argv[1:]:
    text = AutoConfig.from_pretrained(folder).text_config
    print(json.dumps({"version": transformers.__version__, "rope_theta": text.rope_theta,
                      "rope_scaling": getattr(text, "rope_scaling", None), "vocab_size": text.vocab_size}))
"""


def read_with_transformers_4(*model_dirs: Path) -> list[dict[str, Any]]:
    """Each folder's config.json as the real transformers 4.x loads it (rope_theta, rope_scaling, vocab_size).

    One interpreter for all folders (importing 4.x takes seconds). Skips (never fakes) when .transformers4 is not
    installed; `make setup` installs it.
    """
    if not (TRANSFORMERS_4 / "transformers").is_dir():
        pytest.skip(f"{TRANSFORMERS_4} is not installed (make setup installs requirements-transformers4.txt)")
    env = {**subprocess_env(), "PYTHONPATH": os.pathsep.join([str(TRANSFORMERS_4), str(REPO_ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", _READ_WITH_4X, *map(str, model_dirs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    read = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(read) == len(model_dirs) and all(r["version"].startswith("4.") for r in read), result.stdout
    return read
