"""The served-model gate: a fine-tune reaches the endpoint only if it beats, on the same held-out photos, the
model the endpoint serves (the staged base model on day one). The deciding JSONata is evaluated as Step Functions
would (tests/stacks/training_pipeline/training_pipeline_testkit.py)."""

from __future__ import annotations

import json

import pytest

from stacks.training_pipeline.served_gate import PARAMETER_NOT_FOUND
from tests.stacks.conftest import Synthesized
from tests.stacks.training_pipeline.training_pipeline_testkit import (
    BUCKET,
    actions,
    definition,
    evaluate,
    role_policy_statements,
)

SERVED = f"s3://{BUCKET}/base-models/llava-hf/llava-v1.6-mistral-7b-hf/0123abcd/"


def test_a_valid_request_reads_the_served_model_from_the_registry_before_training(registry: Synthesized) -> None:
    states = definition(registry)["States"]
    assert states["RequestValid"]["Default"] == "ReadServedModel"
    read = states["ReadServedModel"]
    assert read["Resource"] == "arn:aws:states:::aws-sdk:ssm:getParameter"
    assert read["Arguments"] == {"Name": registry.stack.model_store.parameter_name}
    assert read["Next"] == "Train"
    assert evaluate(read["Assign"]["served"], states={"result": {"Parameter": {"Value": SERVED}}}) == SERVED
    # A registry without a value means nothing is served: no retry, straight on to training with `$served` null
    assert read["Retry"][0] == {"ErrorEquals": [PARAMETER_NOT_FOUND], "MaxAttempts": 0}
    catches = {tuple(c["ErrorEquals"]): c["Next"] for c in read["Catch"]}
    assert catches == {(PARAMETER_NOT_FOUND,): "NothingServedYet", ("States.ALL",): "ServedModelUnknown"}
    nothing = states["NothingServedYet"]
    assert evaluate(nothing["Assign"]["served"]) is None and nothing["Next"] == "Train"


def test_the_served_model_is_the_training_jobs_served_channel(registry: Synthesized) -> None:
    arguments = definition(registry)["States"]["Train"]["Arguments"]
    request = {"dataset_s3_uri": "s3://b/d/", "base_model_s3_uri": None}
    # launch.py turns SM_CHANNEL_SERVED into the evaluation's --baseline-model-dir
    channels = evaluate(arguments["InputDataConfig"], request=request, served=SERVED)
    assert [c["ChannelName"] for c in channels] == ["train", "served"]
    assert channels[1]["DataSource"]["S3DataSource"]["S3Uri"] == SERVED
    assert [c["ChannelName"] for c in evaluate(arguments["InputDataConfig"], request=request, served=None)] == [
        "train"
    ]


def test_read_metrics_keeps_the_comparison_evaluate_wrote(registry: Synthesized) -> None:
    read = definition(registry)["States"]["ReadMetrics"]
    body = json.dumps(
        {
            "accuracy": 0.91,
            "macro_f1": 0.9,
            "invalid_answers": 0,
            "baseline": {"accuracy": 0.62, "better": True, "profile": "base"},
        }
    )
    metrics = evaluate(read["Assign"]["metrics"], states={"result": {"Body": body}})
    assert metrics == {
        "accuracy": 0.91,
        "macro_f1": 0.9,
        "invalid_answers": 0,
        "baseline_accuracy": 0.62,
        "better_than_served": True,
    }


@pytest.mark.parametrize(
    ("served", "metrics", "passes"),
    [
        (None, {"accuracy": 0.91}, True),
        (SERVED, {"accuracy": 0.91, "baseline_accuracy": 0.62, "better_than_served": True}, True),
        (SERVED, {"accuracy": 0.91, "baseline_accuracy": 0.91, "better_than_served": False}, False),
        (SERVED, {"accuracy": 0.91}, False),
    ],
    ids=["nothing-served", "better", "equal-is-not-better", "not-compared"],
)
def test_only_a_model_better_than_the_served_one_is_rolled_out(
    registry: Synthesized, served: str | None, metrics: dict[str, object], passes: bool
) -> None:
    states = definition(registry)["States"]
    assert states["AccuracyGate"]["Choices"][0]["Next"] == "ServedModelGate"
    gate = states["ServedModelGate"]
    (refusal,) = gate["Choices"]
    refused = evaluate(refusal["Condition"], served=served, metrics=metrics) is True
    assert (refusal["Next"], gate["Default"]) == ("NotBetterThanServed", "CheckEndpoint")
    assert refused is not passes
    if not passes:
        cause = evaluate(
            states["NotBetterThanServed"]["Cause"],
            metrics=metrics,
            served=served,
            training={"model_data_uri": "s3://b/models/run-2/"},
        )
        compared = (
            "does not beat the served model's 0.91" if "baseline_accuracy" in metrics else "was not compared"
        )
        assert cause.startswith(f"validation accuracy 0.91 {compared}")
        assert cause.endswith(
            f"(served: {SERVED}); the model stays at s3://b/models/run-2/ and is not rolled out or registered"
        )


def test_a_pinned_model_is_not_compared(with_model: Synthesized) -> None:
    states = definition(with_model)["States"]
    assert "ReadServedModel" not in states and "ServedModelGate" not in states
    assert states["RequestValid"]["Default"] == "Train"


def test_the_state_machine_may_read_the_registry_and_the_training_job_the_served_model(
    registry: Synthesized,
) -> None:
    reads = [
        s
        for s in role_policy_statements(registry, "TrainingPipelineStateMachineRole")
        if "ssm:getParameter" in actions(s)
    ]
    assert reads and all("parameter/photo-labeler/model/current" in json.dumps(s["Resource"]) for s in reads)
    training = role_policy_statements(registry, "TrainingPipelineTrainingRole")
    (listing,) = [s for s in training if actions(s) == ["s3:ListBucket"]]
    assert "models/*" in listing["Condition"]["StringLike"]["s3:prefix"]
