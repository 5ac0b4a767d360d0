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
from tools.smoke_test import GEOMETRY_CHECK, geometry_check, run_checks, served_geometry_check
from training_job.serving_export import write_text_config_for_both_readers


def _engine_argv(server: Any, model_dir: Path, taxonomy_file: Path) -> list[str]:
    return [
        *("--endpoint", server.endpoint_name, "--endpoint-url", server.base_url, "--region", "us-east-1"),
        *("--model-dir", str(model_dir), "--taxonomy", str(taxonomy_file)),
        # The local engine has no SageMaker model to look up: the folder it loaded is its served config.
        *("--served-config", str(server.model_dir)),
    ]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = smoke_test.main(argv)
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_the_local_engine_passes_every_check(
    vllm_server: Any,
    trained_model: Path,
    taxonomy_file: Path,
    capsys: pytest.CaptureFixture[str],
    aws_env: None,
) -> None:
    # Given the engine serving the trained model, reached through boto3's InvokeEndpoint
    argv = _engine_argv(vllm_server, trained_model, taxonomy_file)

    # When the smoke test runs with the model's own files
    code, out = _run(argv, capsys)

    # Then all five checks pass, one line each, and the verdict says so
    assert code == 0, out
    lines = out.splitlines()
    names = (
        "answer in taxonomy",
        "constraint honoured",
        "logprobs present",
        "prompt tokens match",
        GEOMETRY_CHECK,
    )
    for name in names:
        assert any(line.startswith(f"PASS  {name}:") for line in lines), out
    # Mistral's theta (the tiny model keeps it), as vLLM read it from the folder both transformers majors agree on
    assert "RoPE theta 1e+06 (default), vocabulary" in out
    assert lines[-1] == "verdict: PASSED: 5/5 checks passed"


@pytest.mark.slow
@pytest.mark.parametrize("profile_name", ["base", "base-prefilled"])
def test_a_base_profile_model_is_checked_with_its_own_request(
    vllm_server: Any,
    trained_model: Path,
    taxonomy_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    aws_env: None,
    profile_name: str,
) -> None:
    from classification.model_profile import PROFILE_FILE, profile_named

    # Given the served model's files recording a base profile (as the staging tool leaves them)
    model_dir = Path(
        shutil.copytree(trained_model, tmp_path / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    )
    (model_dir / PROFILE_FILE).write_bytes(profile_named(profile_name).record())

    # When the smoke test runs
    code, out = _run(_engine_argv(vllm_server, model_dir, taxonomy_file), capsys)

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
    aws_env: None,
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
    code, out = _run(_engine_argv(vllm_server, files, taxonomy_file), capsys)

    # Then only the token check fails, and the verdict and exit code say so
    assert code == 1, out
    assert any(line.startswith("FAIL  prompt tokens match:") for line in out.splitlines()), out
    assert out.splitlines()[-1] == "verdict: FAILED (prompt tokens match): 4/5 checks passed"


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


# -- check 5: the served config.json's RoPE theta and vocabulary -------------------------------------------------


@pytest.fixture
def exported(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model's folder after the export step that writes config.json for both transformers majors."""
    folder = Path(
        shutil.copytree(tiny_model_dir, tmp_path / "exported", ignore=shutil.ignore_patterns("*.safet*"))
    )
    write_text_config_for_both_readers(folder)
    return folder


def test_a_served_config_only_transformers_5_reads_right_fails_the_geometry_check(
    tiny_model_dir: Path, exported: Path
) -> None:
    # Given the trained folder (exported) and a served config.json as transformers 5 saves it (no rope_theta key)
    trained = json.loads((exported / "config.json").read_text())
    five_only = json.loads((tiny_model_dir / "config.json").read_text())
    assert "rope_theta" not in five_only["text_config"]

    # When the check compares them
    check = geometry_check(trained, {"s3://models/run-7/model/": five_only})

    # Then it fails naming what a 4.x image would run; the exported file itself passes
    assert not check.passed
    vocabulary = trained["text_config"]["vocab_size"]
    assert f"trained with RoPE theta 1e+06 (default), vocabulary {vocabulary}" in check.detail
    assert "s3://models/run-7/model/ under transformers 4.x: RoPE theta 10000 (default)" in check.detail
    assert "5.x" not in check.detail.split("but")[1].split("(export")[0]  # 5.x reads that file right
    assert geometry_check(trained, {"served": trained}).passed


def test_a_served_vocabulary_that_differs_fails_the_geometry_check(exported: Path) -> None:
    trained = json.loads((exported / "config.json").read_text())
    other = json.loads(json.dumps(trained))
    other["text_config"]["vocab_size"] = 32064  # e.g. the base model's config served instead of the trained one

    check = geometry_check(trained, {"served": other})

    assert not check.passed
    assert "served under transformers 4.x: RoPE theta 1e+06 (default), vocabulary 32064" in check.detail


def _deploy_on_moto(exported: Path, *, s3_data: dict[str, str]) -> None:
    """An endpoint whose one variant's model mounts s3://models/run-7/model/ (moto; boto3 as the tool calls it)."""
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="run-7/model/config.json", Body=(exported / "config.json").read_bytes())
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_model(
        ModelName="llava-run-7",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/endpoint",
        PrimaryContainer={"Image": "lmi", "ModelDataSource": {"S3DataSource": s3_data}},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="llava-config",
        # moto's instance-type list predates ml.g5; the type plays no part here.
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "llava-run-7",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.g4dn.xlarge",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="photo-labeler-llava", EndpointConfigName="llava-config")


UNCOMPRESSED = {"S3Uri": "s3://models/run-7/model/", "S3DataType": "S3Prefix", "CompressionType": "None"}


def test_the_served_config_is_the_one_the_endpoints_model_mounts(exported: Path, aws_env: None) -> None:
    from moto import mock_aws

    trained = json.loads((exported / "config.json").read_text())
    with mock_aws():
        # Given an endpoint serving the exported folder from an uncompressed prefix (the stack's ModelDataSource)
        _deploy_on_moto(exported, s3_data=UNCOMPRESSED)

        # When the check looks the endpoint up (DescribeEndpoint -> endpoint config -> model -> S3)
        check = served_geometry_check(
            trained, served_config=None, endpoint="photo-labeler-llava", region="us-east-1"
        )

    # Then it read that prefix's config.json and found the trained theta and vocabulary
    assert check.passed, check.detail
    vocabulary = trained["text_config"]["vocab_size"]
    assert check.detail == (
        f"RoPE theta 1e+06 (default), vocabulary {vocabulary} in s3://models/run-7/model/, read alike by "
        "transformers 4.x and 5.x"
    )


def test_a_model_the_check_cannot_read_fails_it_with_the_reason(exported: Path, aws_env: None) -> None:
    from moto import mock_aws

    trained = json.loads((exported / "config.json").read_text())
    with mock_aws():
        _deploy_on_moto(exported, s3_data={**UNCOMPRESSED, "CompressionType": "Gzip"})
        compressed = served_geometry_check(
            trained, served_config=None, endpoint="photo-labeler-llava", region=None
        )
        missing = served_geometry_check(trained, served_config=None, endpoint="no-such-endpoint", region=None)

    assert not compressed.passed
    assert "model llava-run-7 is not served from an uncompressed S3 prefix: s3://models/run-7/model/" in (
        compressed.detail
    )
    assert not missing.passed and missing.detail.startswith("cannot compare the config.json files:")
    assert missing.detail.endswith("(or pass --served-config)")


def test_cli_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "has no tokenizer_config.json" in capsys.readouterr().err

    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(SystemExit):
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path)])
    assert "has no config.json" in capsys.readouterr().err

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit):
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path), "--served-config", str(tmp_path / "x")])
    assert "--served-config" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path), "--photo", str(tmp_path / "none.jpg")])
    assert "is not a file" in capsys.readouterr().err

    (tmp_path / "notes.jpg").write_text("not a photo")
    with pytest.raises(SystemExit):
        smoke_test.main(["--endpoint", "e", "--model-dir", str(tmp_path), "--photo", str(tmp_path / "notes.jpg")])
    assert "not an image" in capsys.readouterr().err
