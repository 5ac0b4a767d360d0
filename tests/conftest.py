"""Session fixtures every test folder shares: one tiny model, one dataset, one trained model, one vLLM engine.

Everything is built offline once per session; the expensive steps run the project's own command lines, exactly
as SageMaker would: `python -m training_job.train` trains the tiny model, and the real serving engine (vLLM's
CPU build in .venv-serve, started by model_code/vllm_server.py with serving.properties' engine args) serves it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from training_testkit import (
    COLOURS,
    CPU_TRAINING_ARGS,
    PHOTOS_PER_LABEL,
    SESSION_ENDPOINT_NAME,
    VALIDATION_FRACTION,
    colour_photo,
    run_cli,
)

from classification.contract import Taxonomy


@pytest.fixture(scope="session", autouse=True)
def _offline() -> Iterator[None]:
    # Nothing in these tests may reach the Hub, in-process or in subprocesses.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if previous is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = previous


@pytest.fixture(scope="session")
def taxonomy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("taxonomy") / "taxonomy.json"
    path.write_text(json.dumps({"labels": list(COLOURS)}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def taxonomy(taxonomy_file: Path) -> Taxonomy:
    return Taxonomy.load(taxonomy_file)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    from training_job.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), taxonomy, profile="compact")


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for label in COLOURS:
        (root / label).mkdir()
        for index in range(PHOTOS_PER_LABEL):
            colour_photo(label, rng).save(root / label / f"{index:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory, photo_folder: Path, taxonomy: Taxonomy) -> Path:
    from training_job.build_dataset import build_dataset

    output = tmp_path_factory.mktemp("dataset")
    build_dataset(
        str(photo_folder), output, taxonomy=taxonomy, validation_fraction=VALIDATION_FRACTION, progress=False
    )
    return output


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, dataset_dir: Path) -> Path:
    """The tiny model fine-tuned for three epochs by `python -m training_job.train` (compact profile)."""
    workdir = tmp_path_factory.mktemp("training")
    model_dir = workdir / "model"
    result = run_cli(
        [
            "-m",
            "training_job.train",
            "--config",
            "training_job/configs/sft_llava_next.yaml",
            "--model_name_or_path",
            str(tiny_model_dir),
            "--dataset_name",
            str(dataset_dir),
            "--output_dir",
            str(workdir / "checkpoints"),
            "--final_model_dir",
            str(model_dir),
            "--image_token_profile",
            "compact",
            "--num_train_epochs",
            "3",
            *CPU_TRAINING_ARGS,
        ]
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (workdir / "train.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    return model_dir


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, trained_model: Path) -> Iterator[object]:
    """The real engine (vLLM, CPU build) serving `trained_model` as LMI would; stopped at the end of the session.

    Attributes used by tests: `base_url`, `model_dir`, `endpoint_name` (the one name the SageMaker Runtime route
    accepts), `log_path`. Skipped, never faked, when the serving environment (.venv-serve) is not installed.
    """
    from model_code.vllm_server import ServingEnvironmentMissing, VllmServer, serving_python

    try:
        serving_python()
    except ServingEnvironmentMissing as error:
        pytest.skip(str(error))
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with VllmServer(trained_model, endpoint_name=SESSION_ENDPOINT_NAME, log_file=log) as server:
        yield server
