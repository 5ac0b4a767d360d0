"""Preflight: a wrong chat template or a dataset that trains on nothing fails in seconds, before a job runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from training_job import launch, preflight


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def dataset(dataset_dir: Path) -> Any:
    from training_job.train import load_dataset_dict

    return load_dataset_dict(str(dataset_dir))


@pytest.fixture
def wrong_template_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    # One space less than TRL's template: renders almost the same prompt, but TRL no longer recognises it.
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "wrong-template"))
    template = model / "chat_template.jinja"
    text = template.read_text(encoding="utf-8")
    assert "[INST] " in text
    template.write_text(text.replace("[INST] ", "[INST]", 1), encoding="utf-8")
    return model


def test_the_tiny_base_and_the_built_dataset_pass(
    tiny_model_dir: Path, dataset_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the preflight CLI checks the tiny base and the dataset built by build_dataset
    code = preflight.main(["--model", str(tiny_model_dir), "--dataset", str(dataset_dir)])

    # Then one line per check and a passing verdict
    assert code == 0, capsys.readouterr()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok    chat template: byte-identical to TRL's LLaVA-NeXT template")
    # 16 rows from each of the two splits, each with the compact profile's 1,026 image tokens and its answer
    assert lines[1].startswith("ok    dataset rows: 32 rows over 2 split(s) render with image tokens (1,026 per")
    assert lines[2].startswith("PASS  preflight: 2 checks passed in ")


def test_a_template_one_space_off_fails_both_checks(
    wrong_template_model: Path, dataset_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the preflight CLI checks a base whose template differs from TRL's by one space
    code = preflight.main(["--model", str(wrong_template_model), "--dataset", str(dataset_dir)])

    # Then it says where the template differs, that TRL cannot train with it, and fails
    assert code == preflight.EXIT_FAILED
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL  chat template: differs from TRL's LLaVA-NeXT template")
    assert "first difference at character" in lines[0]
    assert lines[1].startswith("FAIL  dataset rows: TRL has no training template for the base's chat template")
    assert lines[2].startswith("FAIL  preflight: 2 of 2 checks failed")


def test_a_base_without_a_template_passes_because_training_sets_trls() -> None:
    result = preflight.check_chat_template(SimpleNamespace(chat_template=None))
    assert result.passed
    assert "training sets TRL's LLaVA-NeXT template" in result.detail


def test_rows_without_the_answer_turn_fail_with_the_row(processor: Any, dataset: Any) -> None:
    # Given a dataset whose builder dropped the assistant turn (the loss would see no token)
    broken = dataset.map(lambda row: {"messages": row["messages"][:1]})

    # When its rows are rendered
    result = preflight.check_dataset_rows(processor, broken, rows=2)

    # Then the check fails and names the first bad row
    assert not result.passed
    assert result.detail == "train[0] has an empty answer mask: the loss would see no token"


def test_rows_are_sampled_across_the_whole_split() -> None:
    assert preflight._sample_indices(100, 4) == [0, 33, 66, 99]
    assert preflight._sample_indices(3, 16) == [0, 1, 2]


def test_a_folder_that_is_not_a_dataset_is_bad_input(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = preflight.main(["--model", str(tiny_model_dir), "--dataset", str(tmp_path)])
    assert code == preflight.EXIT_BAD_INPUT
    assert "has no dataset_dict.json" in capsys.readouterr().err


@pytest.mark.slow
def test_the_launcher_stops_before_accelerate_when_a_preflight_check_fails(
    wrong_template_model: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the SageMaker environment with the wrong-template base in the model channel
    env = {
        "SM_NUM_GPUS": "0",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_CHANNEL_TRAIN": str(dataset_dir),
        "SM_CHANNEL_MODEL": str(wrong_template_model),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "HF_HUB_OFFLINE": "1",
    }
    started: list[list[str]] = []
    real_run = subprocess.run

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        started.append(command)
        return real_run(command, **kwargs)

    monkeypatch.setattr(launch.subprocess, "run", run)

    # When the launcher runs
    code = launch.main([], env=env)

    # Then the preflight's exit code ends the job and accelerate never started (nor a DeepSpeed install)
    assert code == preflight.EXIT_FAILED
    assert [command[2] for command in started] == ["training_job.preflight"]
