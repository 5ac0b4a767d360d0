"""tools.smoke_test: against the real engine (the session's vLLM) and against endpoints that break the contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from classification.contract import Taxonomy
from classification.image_tokens import GRID_PINPOINTS
from tools import smoke_test
from tools.smoke_test import run_checks

AWS_ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_EC2_METADATA_DISABLED": "true"}


def _engine_argv(server: Any, model_dir: Path, taxonomy_file: Path) -> list[str]:
    return [
        *("--endpoint", server.endpoint_name, "--endpoint-url", server.base_url, "--region", "us-east-1"),
        *("--model-dir", str(model_dir), "--taxonomy", str(taxonomy_file)),
    ]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    code = smoke_test.main(argv)
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_the_local_engine_passes_every_check(
    vllm_server: Any,
    trained_model: Path,
    taxonomy_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the engine serving the trained model, reached through boto3's InvokeEndpoint
    argv = _engine_argv(vllm_server, trained_model, taxonomy_file)

    # When the smoke test runs with the model's own files
    code, out = _run(argv, capsys, monkeypatch)

    # Then all four checks pass, one line each, and the verdict says so
    assert code == 0, out
    lines = out.splitlines()
    for name in ("answer in taxonomy", "constraint honoured", "logprobs present", "prompt tokens match"):
        assert any(line.startswith(f"PASS  {name}:") for line in lines), out
    assert lines[-1] == "verdict: PASSED: 4/4 checks passed"


@pytest.mark.slow
@pytest.mark.parametrize("profile_name", ["base", "base-prefilled"])
def test_a_base_profile_model_is_checked_with_its_own_request(
    vllm_server: Any,
    trained_model: Path,
    taxonomy_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    profile_name: str,
) -> None:
    from classification.model_profile import PROFILE_FILE, profile_named

    # Given the served model's files recording a base profile (as the staging tool leaves them)
    model_dir = Path(
        shutil.copytree(trained_model, tmp_path / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    )
    (model_dir / PROFILE_FILE).write_bytes(profile_named(profile_name).record())

    # When the smoke test runs
    code, out = _run(_engine_argv(vllm_server, model_dir, taxonomy_file), capsys, monkeypatch)

    # Then it asks in that profile (BOS, the bare or prefilled answer) and the engine's prompt count agrees
    assert code == 0, out
    assert f"{profile_name} profile" in out.splitlines()[0]
    assert any(line.startswith("PASS  prompt tokens match:") for line in out.splitlines()), out


@pytest.mark.slow
def test_a_different_image_processor_fails_the_prompt_token_check(
    vllm_server: Any,
    trained_model: Path,
    taxonomy_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given processor files that disagree with the served ones: the stock grid where the model serves compact
    files = tmp_path / "other-processor"
    shutil.copytree(trained_model, files, ignore=shutil.ignore_patterns("*.safetensors"))
    changed = 0
    for path in files.glob("*.json"):
        data = json.loads(path.read_text())
        processor = data.get("image_processor", data)
        if "image_grid_pinpoints" in processor and path.name != "config.json":
            processor["image_grid_pinpoints"] = GRID_PINPOINTS["stock"]
            path.write_text(json.dumps(data))
            changed += 1
    assert changed

    # When the smoke test counts tokens with them
    code, out = _run(_engine_argv(vllm_server, files, taxonomy_file), capsys, monkeypatch)

    # Then only the token check fails, and the verdict and exit code say so
    assert code == 1, out
    assert any(line.startswith("FAIL  prompt tokens match:") for line in out.splitlines()), out
    assert out.splitlines()[-1] == "verdict: FAILED (prompt tokens match): 3/4 checks passed"


def _answer(content: str, *, logprobs: bool = True, prompt_tokens: int = 100) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
    if logprobs:
        choice["logprobs"] = {"content": [{"token": "x", "logprob": -0.1}, {"token": "y", "logprob": 0.0}]}
    return {"choices": [choice], "usage": {"prompt_tokens": prompt_tokens}}


def test_an_endpoint_that_ignores_the_constraint_or_drops_logprobs_fails() -> None:
    taxonomy = Taxonomy(("Pool", "Room", "Bar"))

    # Given an endpoint that always answers Pool without logprobs, whatever the request allows
    def stubborn(request: dict[str, Any]) -> dict[str, Any]:
        return _answer(taxonomy.completion("Pool"), logprobs=False)

    # When the checks run
    checks = {check.name: check for check in run_checks(stubborn, taxonomy, b"jpeg", expected_tokens=100)}

    # Then the forced choice and the logprobs checks fail, with what was seen
    assert checks["answer in taxonomy"].passed
    assert not checks["constraint honoured"].passed
    detail = checks["constraint honoured"].detail
    assert "forced ' this is a photo of Room.', got ' this is a photo of Pool.'" in detail
    assert not checks["logprobs present"].passed
    assert checks["prompt tokens match"].passed


def test_an_answer_outside_the_taxonomy_fails_and_the_probe_still_runs() -> None:
    taxonomy = Taxonomy(("Pool", "Room"))
    requests: list[dict[str, Any]] = []

    def free_text(request: dict[str, Any]) -> dict[str, Any]:
        requests.append(request)
        return _answer(" a swimming pool", prompt_tokens=90)

    checks = {check.name: check for check in run_checks(free_text, taxonomy, b"jpeg", expected_tokens=100)}

    assert not checks["answer in taxonomy"].passed
    assert requests[1]["structured_outputs"] == {"choice": [taxonomy.completion("Pool")]}
    assert checks["prompt tokens match"].detail.startswith("endpoint counted 90, the training processor 100")


def test_cli_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "has no tokenizer_config.json" in capsys.readouterr().err

    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(SystemExit):
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path), "--photo", str(tmp_path / "none.jpg")])
    assert "is not a file" in capsys.readouterr().err

    (tmp_path / "notes.jpg").write_text("not a photo")
    with pytest.raises(SystemExit):
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path), "--photo", str(tmp_path / "notes.jpg")])
    assert "not an image" in capsys.readouterr().err
