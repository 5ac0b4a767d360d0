"""endpoint.mode scheduled in the template: no endpoint, the window state machine, its Spot labelling job, the
schedules, the alarms and least privilege. The window's JSONata is evaluated as Step Functions would, and the job
request is checked against botocore's own model of CreateTrainingJob."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import jsonata
import pytest
from botocore.validate import ParamValidator

from stacks.common.lmi_image import default_table
from stacks.labelling.job_code import ENTRYPOINT
from tests.stacks.conftest import Synthesized
from tests.stacks.intrinsics import REGION, resolve
from tests.stacks.test_state_machines import definitions

WINDOW = {"id": "20261125-101112", "trigger": "schedule", "spot_job": "photo-labeler-label-20261125-101112"}
WINDOW["on_demand_job"] = WINDOW["spot_job"] + "-od"
PLAN = {
    "window_id": WINDOW["id"],
    "photos": 1200,
    "hosts": 2,
    "shards": 2,
    "manifest_prefix": "windows/20261125-101112/manifest/",
    "checkpoint_prefix": "windows/20261125-101112/checkpoints/",
}
MODEL = "s3://example-models/llava-run-7/model/"


def window_states(synthesized: Synthesized) -> dict[str, Any]:
    (definition,) = [d for name, d in definitions(synthesized).items() if name.startswith("LabellingWindow")]
    return definition["States"]


def evaluate(node: Any, **variables: Any) -> Any:
    """A JSONata template (strings `{% ... %}` inside any structure) filled as Step Functions fills it."""
    if isinstance(node, dict):
        return {key: evaluate(value, **variables) for key, value in node.items()}
    if isinstance(node, list):
        return [evaluate(item, **variables) for item in node]
    if isinstance(node, str) and node.startswith("{%") and node.endswith("%}"):
        return jsonata.Jsonata(node[2:-2]).evaluate(None, variables)
    return node


def choose(state: dict[str, Any], **variables: Any) -> str:
    for rule in state["Choices"]:
        if evaluate(rule["Condition"], **variables):
            return rule["Next"]
    return state["Default"]


def test_scheduled_mode_has_no_model_endpoint_or_autoscaling(scheduled_mode: Synthesized) -> None:
    types = {resource["Type"] for resource in scheduled_mode.json["Resources"].values()}
    assert not {t for t in types if t.startswith(("AWS::SageMaker::", "AWS::ApplicationAutoScaling::"))}
    # while the upload path runs (it records PENDING) and the backfill exists without an endpoint
    (mapping,) = scheduled_mode.resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["Enabled"] is True
    variables = [
        function["Properties"]["Environment"]["Variables"]
        for function in scheduled_mode.resources("AWS::Lambda::Function").values()
        if "ENDPOINT_MODE" in function["Properties"].get("Environment", {}).get("Variables", {})
    ]
    assert len(variables) == 2  # the upload labeller and the backfill's
    assert all(v["ENDPOINT_MODE"] == "scheduled" and "ENDPOINT_NAME" not in v for v in variables)


def test_the_job_runs_on_managed_spot_with_a_checkpoint_and_falls_back_on_demand(
    scheduled_mode: Synthesized,
) -> None:
    states = window_states(scheduled_mode)
    spot = evaluate(states["LabelOnSpot"]["Arguments"], window=WINDOW, plan=PLAN, model=MODEL)
    demand = evaluate(states["LabelOnDemand"]["Arguments"], window=WINDOW, plan=PLAN, model=MODEL)
    assert states["LabelOnSpot"]["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")
    assert spot["EnableManagedSpotTraining"] is True and demand["EnableManagedSpotTraining"] is False
    # MaxWaitTimeInSeconds must be >= MaxRuntimeInSeconds (REFERENCE, CreateTrainingJob StoppingCondition)
    assert spot["StoppingCondition"] == {"MaxRuntimeInSeconds": 330 * 60, "MaxWaitTimeInSeconds": 390 * 60}
    assert demand["StoppingCondition"] == {"MaxRuntimeInSeconds": 330 * 60}
    # Both attempts share the window's checkpoint (the fallback resumes), synced with /opt/ml/checkpoints
    checkpoint = spot["CheckpointConfig"]
    assert checkpoint == demand["CheckpointConfig"]
    assert checkpoint["S3Uri"].endswith("/windows/20261125-101112/checkpoints/") and checkpoint["LocalPath"] == (
        "/opt/ml/checkpoints"
    )
    assert (spot["TrainingJobName"], demand["TrainingJobName"]) == (WINDOW["spot_job"], WINDOW["on_demand_job"])
    assert spot["ResourceConfig"] == {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 50}


def test_the_job_is_the_endpoints_lmi_image_running_the_labelling_entry_point(scheduled_mode: Synthesized) -> None:
    arguments = evaluate(
        window_states(scheduled_mode)["LabelOnSpot"]["Arguments"], window=WINDOW, plan=PLAN, model=MODEL
    )
    algorithm = arguments["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == default_table().uri("0.38.0", REGION)
    assert algorithm["ContainerEntrypoint"] == list(ENTRYPOINT)
    assert algorithm["ContainerArguments"] == ["--batch-size", "64"]
    channels = {channel["ChannelName"]: channel for channel in arguments["InputDataConfig"]}
    assert channels["manifest"]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert channels["manifest"]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "/windows/20261125-101112/manifest/"
    )
    assert (channels["model"]["InputMode"], channels["model"]["DataSource"]["S3DataSource"]["S3Uri"]) == (
        "FastFile",
        MODEL,
    )
    assert channels["code"]["DataSource"]["S3DataSource"]["S3Uri"].endswith(".zip")
    environment = arguments["Environment"]
    assert (environment["ENDPOINT_MODE"], environment["MODEL_ID"]) == ("scheduled", MODEL)
    assert {"TABLE_NAME", "CONFIDENCE_THRESHOLD", "TAXONOMY_FILE", "AWS_DEFAULT_REGION"} <= set(environment)


@pytest.mark.parametrize("state", ["LabelOnSpot", "LabelOnDemand"])
def test_the_job_request_is_valid_for_botocores_model_of_create_training_job(
    scheduled_mode: Synthesized, state: str
) -> None:
    # The request Step Functions sends, against the shapes, enums and limits of the SageMaker API model
    # (botocore data sagemaker/2017-07-24/service-2.json: CreateTrainingJobRequest).
    arguments = evaluate(window_states(scheduled_mode)[state]["Arguments"], window=WINDOW, plan=PLAN, model=MODEL)
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(arguments, shape)
    assert not report.has_errors(), report.generate_report()
    # and the limits the validator does not enforce: 100 entrypoint items of <= 256 characters, 100 variables
    assert all(len(item) <= 256 for item in arguments["AlgorithmSpecification"]["ContainerEntrypoint"])
    assert len(arguments["Environment"]) <= 100 and all(len(v) <= 512 for v in arguments["Environment"].values())


@pytest.mark.parametrize(
    ("trigger", "pending", "oldest", "next_state"),
    [
        ("schedule", 0, 0, "NothingPending"),  # an empty window starts nothing
        ("backlog", 0, 0, "NothingPending"),
        ("schedule", 1, 60, "CheckOverlap"),  # a regular window takes whatever waits
        ("backlog", 9_999, 3_600, "BelowThreshold"),  # a check below the threshold, no window missed
        ("backlog", 10_000, 60, "CheckOverlap"),  # the backlog reached the threshold: start early
        ("backlog", 5, 6 * 3600 + 15 * 60, "CheckOverlap"),  # a regular window was missed: catch up
    ],
)
def test_a_window_starts_a_job_only_when_photos_wait_and_it_is_due(
    scheduled_mode: Synthesized, trigger: str, pending: int, oldest: int, next_state: str
) -> None:
    decide = window_states(scheduled_mode)["Decide"]
    survey = {"pending": pending, "oldest_age_seconds": oldest}
    assert choose(decide, window={**WINDOW, "trigger": trigger}, survey=survey) == next_state


def test_windows_never_overlap(scheduled_mode: Synthesized) -> None:
    states = window_states(scheduled_mode)
    me = "arn:aws:states:us-east-1:123456789012:execution:photo-labeler-labelling-window:me"
    other = me.replace(":me", ":other")
    count = states["CheckOverlap"]["Assign"]["others"]
    context = {"Execution": {"Id": me}}

    def others(*arns: str) -> int:
        result = {"Executions": [{"ExecutionArn": arn} for arn in arns]}
        return int(evaluate(count, states={"result": result, "context": context}))

    assert (others(me), others(me, other)) == (0, 1)
    assert choose(states["Overlap?"], others=1) == "WindowAlreadyRunning"
    assert choose(states["Overlap?"], others=0) == "ResolveModel"
    assert states["CheckOverlap"]["Arguments"]["StatusFilter"] == "RUNNING"


@pytest.mark.parametrize(
    ("name", "status", "secondary", "next_state"),
    [
        ("spot_job", "Completed", "Completed", "Report"),
        ("spot_job", "Stopped", "MaxWaitTimeExceeded", "LabelOnDemand"),  # no Spot in time: on-demand resumes
        ("spot_job", "Failed", "Failed", "ReportFailedWindow"),  # photos stay PENDING, the window fails (alarm)
        ("spot_job", "Stopped", "MaxRuntimeExceeded", "ReportFailedWindow"),
        ("on_demand_job", "Stopped", "MaxWaitTimeExceeded", "ReportFailedWindow"),  # never a second fallback
        ("on_demand_job", "Completed", "Completed", "Report"),
    ],
)
def test_the_job_outcome_decides_between_report_fallback_and_failure(
    scheduled_mode: Synthesized, name: str, status: str, secondary: str, next_state: str
) -> None:
    job = {"TrainingJobName": WINDOW[name], "TrainingJobStatus": status, "SecondaryStatus": secondary}
    assert choose(window_states(scheduled_mode)["JobOutcome"], job=job, window=WINDOW) == next_state


def test_a_failed_job_and_its_description_both_lead_to_the_outcome_or_the_failure_report(
    scheduled_mode: Synthesized,
) -> None:
    states = window_states(scheduled_mode)
    assert states["LabelOnSpot"]["Catch"][0]["Next"] == "DescribeSpotJob"
    assert states["DescribeSpotJob"]["Next"] == "JobOutcome"
    assert states["DescribeSpotJob"]["Catch"][0]["Next"] == "ReportFailedWindow"
    assert states["ReportFailedWindow"]["Next"] == "WindowFailed" and states["Report"]["Next"] == "Done"
    failed = {"TrainingJobName": WINDOW["spot_job"], "TrainingJobStatus": "Failed", "SecondaryStatus": "Failed"}
    cause = evaluate(
        states["WindowFailed"]["Cause"], job={**failed, "FailureReason": "OOM"}, failure={}, report={"labeled": 3}
    )
    assert cause.startswith(f"labelling job {WINDOW['spot_job']} ended Failed (Failed) OOM")
    assert "stay PENDING" in cause


def test_registry_windows_read_the_model_when_they_start_and_spot_may_have_no_fallback(
    scheduled_registry: Synthesized,
) -> None:
    states = window_states(scheduled_registry)
    assert states["ResolveModel"]["Resource"].endswith(":states:::aws-sdk:ssm:getParameter")
    assert states["ResolveModel"]["Arguments"] == {"Name": "/photo-labeler/model/current"}
    assert states["ResolveModel"]["Catch"][0]["Next"] == "NoModel"
    assert "LabelOnDemand" not in states
    assert {rule["Next"] for rule in states["JobOutcome"]["Choices"]} == {"Report"}
    # No deploy-time registry parameter: the windows read it themselves
    assert "RegisteredModelDataUri" not in scheduled_registry.json.get("Parameters", {})


def test_the_schedules_start_the_window_regularly_and_to_check_the_backlog(scheduled_mode: Synthesized) -> None:
    schedules = scheduled_mode.resources("AWS::Scheduler::Schedule")
    targets = {
        s["Properties"]["ScheduleExpression"]: json.loads(s["Properties"]["Target"]["Input"])
        for s in schedules.values()
    }
    assert targets == {"rate(6 hours)": {"trigger": "schedule"}, "rate(15 minutes)": {"trigger": "backlog"}}
    machines = {json.dumps(s["Properties"]["Target"]["Arn"]) for s in schedules.values()}
    assert len(machines) == 1 and "LabellingWindowStateMachine" in machines.pop()


def test_a_photo_waiting_two_windows_or_no_survey_raises_the_alarm(scheduled_mode: Synthesized) -> None:
    alarms = scheduled_mode.resources("AWS::CloudWatch::Alarm")
    (pending,) = [
        a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "OldestPendingSeconds"
    ]
    assert (pending["Threshold"], pending["Period"], pending["TreatMissingData"]) == (12 * 3600, 900, "breaching")
    assert pending["Dimensions"] == [{"Name": "service", "Value": "photo-labeler-window"}]
    assert pending["AlarmActions"] and pending["OKActions"]
    descriptions = [a["Properties"].get("AlarmDescription", "") for a in alarms.values()]
    assert any(text.startswith("A labelling window failed") for text in descriptions)


def _statements(synthesized: Synthesized, role_fragment: str) -> list[dict[str, Any]]:
    found = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if any(role_fragment in json.dumps(role) for role in policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return [resolve(statement, synthesized.json) for statement in found]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_the_job_role_reads_exact_prefixes_and_writes_labels_with_put_item_only(
    scheduled_registry: Synthesized,
) -> None:
    statements = _statements(scheduled_registry, "LabellingWindowJobRole")
    actions = set().union(*(_actions(s) for s in statements))
    assert not {a for a in actions if a.startswith("dynamodb:")} - {"dynamodb:GetItem", "dynamodb:PutItem"}
    # current versions only (If-Match reads), no service-wide wildcard action
    assert "s3:GetObjectVersion" not in actions and not [a for a in actions if a.endswith(":*")]
    reads = [
        r
        for s in statements
        if "s3:GetObject" in _actions(s)
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert all(not r.endswith(":::*") and r.count("/") >= 1 for r in reads), reads
    suffixes = {r.split("/", 1)[1] for r in reads}
    assert {"uploads/*", "archive/*", "windows/*", "models/*"} <= suffixes
    dynamo = [s for s in statements if _actions(s) & {"dynamodb:PutItem"}]
    assert all("index" not in json.dumps(s["Resource"]) for s in dynamo)


def test_the_window_function_queries_only_the_status_index(scheduled_mode: Synthesized) -> None:
    statements = _statements(scheduled_mode, "LabellingWindowFunctionRole")
    (query,) = [s for s in statements if _actions(s) & {"dynamodb:Query"}]
    assert _actions(query) == {"dynamodb:Query"} and query["Resource"].endswith("/index/by-status")
    assert not any(_actions(s) & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"} for s in statements)


def test_the_upload_path_alarms_count_recording_pending_as_progress(scheduled_mode: Synthesized) -> None:
    # The stall alarm must not fire on a healthy scheduled upload path, which labels nothing: it records PENDING
    (stall,) = [
        a["Properties"]
        for a in scheduled_mode.resources("AWS::CloudWatch::Alarm").values()
        if "No upload was processed" in a["Properties"].get("AlarmDescription", "")
    ]
    read = {m["MetricStat"]["Metric"].get("MetricName") for m in stall["Metrics"] if "MetricStat" in m}
    assert read == {"ApproximateNumberOfMessagesVisible", "PhotosPending", "PhotosRejected", "PhotosSkipped"}
