"""The training pipeline (Step Functions), its IAM scope and the model lifecycle in the synthesized template.

The state machine is written in JSONata; the expressions that decide something (input validation, the accuracy
gate, the model URI) are taken from the synthesized definition and evaluated with a JSONata engine, so these tests
check what Step Functions will run, not a copy of it.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.common.training_image import TrainingImageTable, UnsupportedTrainingImage
from stacks.config import ConfigError
from stacks.training_pipeline.training_asset import (
    ENTRY_POINT,
    archive_members,
    build_archive,
    training_code_asset,
)
from tests.stacks.conftest import Synthesized
from tests.stacks.training_pipeline.training_pipeline_testkit import (
    BUCKET,
    REGISTRY,
    VALID_INPUT,
    definition,
    evaluate,
    request_for,
)

# --- the training task ------------------------------------------------------------------------------------------


def test_training_runs_on_p5_synchronously_with_uncompressed_output_and_s3_checkpoints(
    registry: Synthesized,
) -> None:
    # Given the committed config (defaults of the training section)
    train = definition(registry)["States"]["Train"]
    # Then the optimized .sync integration trains on one ml.p5.48xlarge for at most 2 days, on demand
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    arguments = train["Arguments"]
    assert arguments["ResourceConfig"]["InstanceType"] == "ml.p5.48xlarge"
    assert arguments["StoppingCondition"] == {"MaxRuntimeInSeconds": 172800}
    assert arguments["EnableManagedSpotTraining"] is False
    # And the model directory lands uncompressed, KMS-encrypted, in the training bucket (directly servable)
    assert arguments["OutputDataConfig"]["CompressionType"] == "NONE"
    assert arguments["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/models/"
    assert arguments["OutputDataConfig"]["KmsKeyId"].startswith("arn:aws:StorageKey")
    # And checkpoints sync to a per-job S3 prefix from SageMaker's default local path (launch.py's default)
    checkpoint = arguments["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    assert evaluate(checkpoint["S3Uri"], request={"job_name": "photo-labeler-r1"}) == (
        f"s3://{BUCKET}/checkpoints/photo-labeler-r1/"
    )
    # And the image is the Hugging Face PyTorch training DLC, resolved per region
    image = arguments["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith("/huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04")


def test_training_hosts_exchange_weights_encrypted(registry: Synthesized) -> None:
    # Given a multi-node run (an execution may ask for up to training.max_instance_count hosts)
    arguments = definition(registry)["States"]["Train"]["Arguments"]
    # Then ZeRO-3's parameter and gradient exchange between hosts is encrypted in transit
    assert arguments["EnableInterContainerTrafficEncryption"] is True


def test_training_code_and_channels_follow_the_launcher_contract(registry: Synthesized) -> None:
    arguments = definition(registry)["States"]["Train"]["Arguments"]
    request = {"hyperparameters": {"num_train_epochs": "3", "evaluate": "true"}, "dataset_s3_uri": "s3://b/d/"}
    hyperparameters = evaluate(arguments["HyperParameters"], request=request)
    # The toolkit runs training_job/launch.py from the code archive, with the execution's overrides
    assert hyperparameters["sagemaker_program"] == ENTRY_POINT == "training_job/launch.py"
    assert hyperparameters["sagemaker_submit_directory"].startswith(
        "s3://cdk-hnb659fds-assets-123456789012-us-east-1/"
    )
    assert hyperparameters["num_train_epochs"] == "3"
    # The dataset is the `train` channel (SM_CHANNEL_TRAIN); base weights become `model` only when given
    channels = evaluate(arguments["InputDataConfig"], request={**request, "base_model_s3_uri": None})
    assert [c["ChannelName"] for c in channels] == ["train"]
    assert channels[0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/d/"
    with_base = evaluate(arguments["InputDataConfig"], request={**request, "base_model_s3_uri": "s3://b/base/"})
    assert [c["ChannelName"] for c in with_base] == ["train", "model"]


def test_config_section_reaches_the_training_task(synth_app: Callable[..., Synthesized]) -> None:
    # Given spot training on two instances, a 1-hour runtime and an extra hyper-parameter
    synthesized = synth_app(
        {
            **REGISTRY,
            "photo_labeler.training.instance_count": "2",
            "photo_labeler.training.use_spot": "true",
            "photo_labeler.training.max_runtime_seconds": "3600",
            "photo_labeler.training.hyperparameters": '{"image_token_profile": "compact", "num_train_epochs": 3}',
        }
    )
    states = definition(synthesized)["States"]
    arguments = states["Train"]["Arguments"]
    # Then spot is on, waiting for capacity is bounded, and the defaults of a run carry the configured values
    assert arguments["EnableManagedSpotTraining"] is True
    assert arguments["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    request, problems = request_for(states, VALID_INPUT)
    assert problems == []
    assert request["instance_count"] == 2
    assert request["hyperparameters"] == {
        "image_token_profile": "compact",
        "num_train_epochs": "3",
        "evaluate": "true",
        "confidence_threshold": "0.8",
    }


# --- the execution input --------------------------------------------------------------------------------------


def test_a_valid_input_gets_defaults_and_a_prefixed_job_name(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    request, problems = request_for(states, VALID_INPUT)
    assert problems == []
    assert request["job_name"] == "photo-labeler-hotels-2026-11"
    assert request["instance_count"] == 1 and request["min_accuracy"] == 0.9
    # The evaluation counts NEEDS_REVIEW photos at the upload path's own threshold (cdk.json: 0.8)
    assert request["hyperparameters"] == {"evaluate": "true", "confidence_threshold": "0.8"}
    # Without a run name, the execution's start time names the run
    request, problems = request_for(states, {"dataset_s3_uri": VALID_INPUT["dataset_s3_uri"]})
    assert problems == [] and request["job_name"] == "photo-labeler-20261125-101112"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dataset_s3_uri": "s3://someone-elses-bucket/datasets/x/"}, "dataset_s3_uri must be a folder URI"),
        ({"dataset_s3_uri": f"s3://{BUCKET}/datasets/x"}, "dataset_s3_uri must be a folder URI ending in /"),
        ({"run_name": "bad_name!"}, "run_name must be letters, digits and single hyphens"),
        ({"run_name": "r" * 60}, "run_name is too long"),
        ({"min_accuracy": 0.5}, "min_accuracy may only raise the configured bar 0.9"),
        ({"instance_count": 9}, "instance_count must be an integer 1..4"),
        ({"hyperparameters": {"evaluate": "false"}}, "hyperparameters evaluate are set by the pipeline"),
        ({"hyperparameters": {"sagemaker_program": "x.py"}}, "hyperparameters sagemaker_program are set by"),
        ({"hyperparameters": {"confidence_threshold": 0.1}}, "hyperparameters confidence_threshold are set by"),
        ({"hyperparameters": {"lr": [1, 2]}}, "hyperparameter values must be strings, numbers or booleans: lr"),
        ({"base_model_s3_uri": "s3://elsewhere/w/"}, "base_model_s3_uri must be a folder URI ending in / under"),
        ({"datset_s3_uri": "typo"}, "unknown input key(s): datset_s3_uri"),
    ],
)
def test_a_bad_input_fails_before_training_with_a_cause_naming_the_problem(
    registry: Synthesized, overrides: dict[str, Any], expected: str
) -> None:
    states = definition(registry)["States"]
    # When an execution starts with a wrong field
    _request, problems = request_for(states, {**VALID_INPUT, **overrides})
    # Then ValidateRequest names it, RequestValid routes to the InvalidRequest Fail state, and nothing is trained
    assert any(expected in problem for problem in problems), problems
    choice = states["RequestValid"]
    assert evaluate(choice["Choices"][0]["Condition"], problems=problems) is True
    # (a valid one goes on to read what the endpoint serves, then trains: test_training_pipeline_served_gate.py)
    assert choice["Choices"][0]["Next"] == "InvalidRequest" and choice["Default"] == "ReadServedModel"
    cause = evaluate(states["InvalidRequest"]["Cause"], problems=problems)
    assert cause.startswith("Nothing was started: ") and expected in cause


def test_a_non_object_input_is_rejected(registry: Synthesized) -> None:
    _request, problems = request_for(definition(registry)["States"], ["not", "an", "object"])
    assert "the execution input must be a JSON object" in problems


# --- evaluation and the accuracy gate -------------------------------------------------------------------------


def test_metrics_are_read_from_the_model_directory_the_job_wrote(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    # Given SageMaker reports the uncompressed model prefix (with or without a trailing slash)
    for reported in (
        f"s3://{BUCKET}/models/photo-labeler-r1/output/model",
        f"s3://{BUCKET}/models/photo-labeler-r1/output/model/",
    ):
        result = {"ModelArtifacts": {"S3ModelArtifacts": reported}, "TrainingJobName": "photo-labeler-r1"}
        training = evaluate(states["Train"]["Assign"]["training"], states={"result": result})
        assert training["model_data_uri"] == f"s3://{BUCKET}/models/photo-labeler-r1/output/model/"
    # Then ReadMetrics fetches evaluation/metrics.json under it (evaluate.py's --output-dir in launch.py)
    read = states["ReadMetrics"]
    assert read["Resource"] == "arn:aws:states:::aws-sdk:s3:getObject"
    assert read["Arguments"]["Bucket"] == BUCKET
    key = evaluate(read["Arguments"]["Key"], training=training)
    assert key == "models/photo-labeler-r1/output/model/evaluation/metrics.json"
    body = json.dumps({"accuracy": 0.93, "macro_f1": 0.9, "invalid_answers": 1, "per_class": {}})
    metrics = evaluate(read["Assign"]["metrics"], states={"result": {"Body": body}})
    assert metrics == {"accuracy": 0.93, "macro_f1": 0.9, "invalid_answers": 1}
    # And a missing metrics.json stops the run with its own error
    assert read["Catch"][0]["Next"] == "NoEvaluation"


@pytest.mark.parametrize(("accuracy", "passes"), [(0.95, True), (0.9, True), (0.85, False), (None, False)])
def test_accuracy_gate_continues_only_at_or_above_the_bar(
    registry: Synthesized, accuracy: float | None, passes: bool
) -> None:
    states = definition(registry)["States"]
    gate = states["AccuracyGate"]
    metrics = {} if accuracy is None else {"accuracy": accuracy}
    result = evaluate(gate["Choices"][0]["Condition"], metrics=metrics, request={"min_accuracy": 0.9})
    assert bool(result) is passes
    # (then the served-model gate before any rollout: test_training_pipeline_served_gate.py)
    assert gate["Choices"][0]["Next"] == "ServedModelGate" and gate["Default"] == "BelowAccuracyBar"
    if not passes and accuracy is not None:
        cause = evaluate(
            states["BelowAccuracyBar"]["Cause"],
            metrics=metrics,
            request={"min_accuracy": 0.9},
            training={"model_data_uri": "s3://b/m/"},
        )
        assert cause == (
            "validation accuracy 0.85 is below the bar 0.9; the model stays at s3://b/m/ and is not registered or "
            "deployed"
        )


# --- config validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"photo_labeler.training.instance_count": "0"}, "photo_labeler.training.instance_count"),
        ({"photo_labeler.training.image_version": '"9.9.9-pytorch9"'}, "photo_labeler.training.image_version"),
        ({"photo_labeler.training.max_wait_seconds": "7200"}, "photo_labeler.training.max_wait_seconds"),
        ({"photo_labeler.training.min_accuracy": "0"}, "photo_labeler.training.min_accuracy"),
        (
            {"photo_labeler.endpoint.rollout_timeout_seconds": "60"},
            "photo_labeler.endpoint.rollout_timeout_seconds",
        ),
        ({"photo_labeler.endpoint.rollout_canary_percent": "60"}, "photo_labeler.endpoint.rollout_canary_percent"),
        ({"photo_labeler.training.base_model_prefix": "weights/"}, "photo_labeler.training.base_model_prefix"),
        (
            {"photo_labeler.training.hyperparameters": '{"evaluate": "false"}'},
            "photo_labeler.training.hyperparameters.evaluate",
        ),
        ({"photo_labeler.training.instance_typo": "1"}, "photo_labeler.training.instance_typo"),
        (
            {**REGISTRY, "photo_labeler.endpoint.rollout_canary_percent": "25"},
            "photo_labeler.endpoint.rollout_canary_percent",
        ),
    ],
)
def test_config_errors_name_the_key(
    synth_app: Callable[..., Synthesized], overrides: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as error:
        synth_app(overrides)
    assert str(error.value).startswith(f"{key}: "), str(error.value)


# --- training image and code asset ------------------------------------------------------------------------------


def test_training_image_comes_from_the_regions_ecr_account() -> None:
    table = TrainingImageTable.load()
    assert table.uri("5.3.0-pytorch2.9.0", "us-east-1").startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/")
    assert table.uri("5.3.0-pytorch2.9.0", "ap-east-1").startswith("871362719292.dkr.ecr.ap-east-1.amazonaws.com/")
    assert ".amazonaws.com.cn/" in table.uri("5.3.0-pytorch2.9.0", "cn-north-1")
    with pytest.raises(UnsupportedTrainingImage, match="not published in region 'eu-central-2'"):
        table.uri("5.3.0-pytorch2.9.0", "eu-central-2")


def test_environment_agnostic_stack_maps_every_region_of_the_table(registry: Synthesized) -> None:
    (mapping,) = [m for n, m in registry.json["Mappings"].items() if "TrainingImageRegistry" in n]
    assert {r: e["account"] for r, e in mapping.items()} == TrainingImageTable.load().registries[
        "5.3.0-pytorch2.9.0"
    ]


def test_synth_uploads_the_tarball_itself_as_a_file_asset(tmp_path: Path) -> None:
    # Given a stack with the training code asset and bundling enabled (the stack fixtures skip bundling)
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "Code")
    asset = training_code_asset(stack, "Code")
    # When it is synthesized
    app.synth()
    # Then the staged asset is one gzip'd tar (not a zip of a directory), exactly the reproducible archive
    manifest = json.loads((tmp_path / "cdk.out" / "Code.assets.json").read_text())
    (entry,) = [e for e in manifest["files"].values() if e["displayName"] == "Code"]
    assert entry["source"]["packaging"] == "file"
    staged = (tmp_path / "cdk.out" / entry["source"]["path"]).read_bytes()
    assert staged == build_archive(archive_members(), tmp_path / "expected.tar.gz").read_bytes()
    assert stack.resolve(asset.s3_object_key).endswith(".gz")


def test_code_archive_is_reproducible_and_holds_the_launcher_layout(tmp_path: Path) -> None:
    members = archive_members()
    first = build_archive(members, tmp_path / "a" / "sourcedir.tar.gz").read_bytes()
    second = build_archive(members, tmp_path / "b" / "sourcedir.tar.gz").read_bytes()
    assert first == second  # same inputs, same bytes: no spurious asset uploads
    with tarfile.open(tmp_path / "a" / "sourcedir.tar.gz") as archive:
        names = archive.getnames()
    assert {"requirements.txt", ENTRY_POINT, "training_job/train.py", "classification/contract.py"} <= set(names)
    assert "classification/taxonomy.json" in names and "training_job/configs/ds_zero3.json" in names
    # evaluate.py decodes as the endpoint does with its own module; nothing of the endpoint's model_code/ ships
    assert "training_job/constrained.py" in names
    assert not [n for n in names if n.startswith("model_code/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
