"""The operations dashboard and alarms: each alarm's metric, threshold, comparison and actions, and the widgets."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from classification.contract import Taxonomy
from stacks.config import AppConfig, ConfigError, MonitoringConfig
from tests.stacks.conftest import MODEL_URI, Synthesized

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ops-pager"


def alarms(s: Synthesized) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in s.resources("AWS::CloudWatch::Alarm").items()}


def alarm(s: Synthesized, name: str) -> dict[str, Any]:
    (found,) = [props for key, props in alarms(s).items() if key.startswith(f"Monitoring{name}")]
    return found


def topic_ref(s: Synthesized) -> dict[str, str]:
    (topic,) = s.resources("AWS::SNS::Topic")
    return {"Ref": topic}


def dashboard_widgets(s: Synthesized) -> list[dict[str, Any]]:
    """The dashboard body with each CloudFormation token rendered as <LogicalId> or <LogicalId.Attr>."""
    body = s.only("AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"<{part['Ref']}>"
        if "Fn::GetAtt" in part:
            return "<{}.{}>".format(*part["Fn::GetAtt"])
        return "<token>"

    return json.loads("".join(text(p) for p in parts))["widgets"]


def widget(s: Synthesized, title_start: str) -> dict[str, Any]:
    (found,) = [w for w in dashboard_widgets(s) if w["properties"].get("title", "").startswith(title_start)]
    return found["properties"]


def metric_names(properties: dict[str, Any]) -> list[str]:
    """Metric names of a graph widget's metric arrays ([namespace, name, dim, value, ..., {options}])."""
    names = []
    for row in properties.get("metrics", []):
        plain = [part for part in row if isinstance(part, str)]
        if len(plain) >= 2 and plain[0] != ".":
            names.append(plain[1])
    return names


# -- alarms --------------------------------------------------------------------------------------------------


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears(with_model: Synthesized) -> None:
    topic = topic_ref(with_model)
    found = alarms(with_model)
    assert len([k for k in found if k.startswith("Monitoring")]) == 4
    # The dashboard's four, the DLQ's, the training pipeline's and the endpoint's two rollback alarms
    assert len(found) == 8
    for key, props in found.items():
        assert props["AlarmActions"] == [topic], key
        assert props["OKActions"] == [topic], key


@pytest.mark.parametrize("variant", ["no_model", "with_model", "registry"])
def test_the_alarm_widget_shows_every_alarm_of_the_stack(variant: str, request: pytest.FixtureRequest) -> None:
    # Given every alarm the stack defines, wherever it is defined (upload path, pipeline, endpoint, dashboard)
    synthesized: Synthesized = request.getfixturevalue(variant)
    defined = set(alarms(synthesized))
    # Then the status widget lists exactly those, the training pipeline's failure alarm included
    shown = {arn.removeprefix("<").removesuffix(".Arn>") for arn in widget(synthesized, "Alarms")["alarms"]}
    assert shown == defined
    assert any(key.startswith("TrainingPipelineFailedExecutions") for key in shown)


def test_the_training_failure_alarm_watches_the_training_state_machine(no_model: Synthesized) -> None:
    (props,) = [p for k, p in alarms(no_model).items() if k.startswith("TrainingPipelineFailedExecutions")]
    machine = next(
        k
        for k, m in no_model.resources("AWS::StepFunctions::StateMachine").items()
        if m["Properties"]["StateMachineName"] == "photo-labeler-training"
    )
    assert (props["Namespace"], props["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert props["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine}}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_the_dlq_alarm_is_the_upload_paths_own_and_is_not_duplicated(with_model: Synthesized) -> None:
    dlq_alarms = [
        k
        for k, p in alarms(with_model).items()
        if p.get("MetricName") == "ApproximateNumberOfMessagesVisible" and "DeadLetter" in json.dumps(p)
    ]
    assert dlq_alarms == [next(k for k in alarms(with_model) if k.startswith("UploadPathDeadLetterQueueAlarm"))]
    status = widget(with_model, "Alarms")
    assert any("UploadPathDeadLetterQueueAlarm" in arn for arn in status["alarms"])


def test_queue_age_alarm_fires_when_the_oldest_upload_waits_too_long(with_model: Synthesized) -> None:
    props = alarm(with_model, "QueueAgeAlarm")
    assert props["Namespace"] == "AWS/SQS" and props["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert "UploadPathQueue" in json.dumps(props["Dimensions"]) and "DeadLetter" not in json.dumps(props)
    assert (props["Statistic"], props["Period"]) == ("Maximum", 60)
    assert (props["Threshold"], props["ComparisonOperator"]) == (900, "GreaterThanThreshold")
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (5, 5)
    assert props["TreatMissingData"] == "notBreaching"


def test_endpoint_errors_alarm_counts_this_endpoints_5xx(with_model: Synthesized) -> None:
    props = alarm(with_model, "EndpointErrorsAlarm")
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SageMaker", "Invocation5XXErrors")
    assert props["Dimensions"] == [
        {"Name": "EndpointName", "Value": "photo-labeler-llava-realtime-g5-xlarge"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert (props["Statistic"], props["Period"], props["Threshold"]) == ("Sum", 300, 5)
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_stall_alarm_fires_when_nothing_is_processed_while_uploads_keep_waiting(with_model: Synthesized) -> None:
    props = alarm(with_model, "StallAlarm")
    metrics = {m["Id"]: m for m in props["Metrics"]}
    (expression,) = [m for m in props["Metrics"] if "Expression" in m]
    assert expression["Expression"] == (
        "IF(FILL(waiting, 0) > 0 AND (FILL(p0, 0) + FILL(p1, 0) + FILL(p2, 0) + FILL(p3, 0)) == 0, 1, 0)"
    )
    # The queue held messages for the whole window (its minimum), over the configured 15 minutes
    waiting = metrics["waiting"]["MetricStat"]
    assert waiting["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (waiting["Stat"], waiting["Period"]) == ("Minimum", 900)
    # Progress counts only the upload path's photos: a running backfill cannot mask a stuck upload path
    progress = [metrics[f"p{i}"]["MetricStat"]["Metric"] for i in range(4)]
    assert [m["MetricName"] for m in progress] == [
        "PhotosLabeled",
        "PhotosNeedsReview",
        "PhotosRejected",
        "PhotosSkipped",
    ]
    for metric in progress:
        assert metric["Namespace"] == "HotelPhotoLabeler"
        assert metric["Dimensions"] == [{"Name": "service", "Value": "photo-labeler"}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_backfill_failure_alarm_watches_the_backfill_state_machine(with_model: Synthesized) -> None:
    props = alarm(with_model, "BackfillFailedAlarm")
    machine = next(k for k in with_model.resources("AWS::StepFunctions::StateMachine") if k.startswith("Backfill"))
    watched = {
        m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"]["Dimensions"]
        for m in props["Metrics"]
        if "MetricStat" in m
    }
    assert set(watched) == {"ExecutionsFailed", "ExecutionsTimedOut"}  # a deliberate stop is not an incident
    assert all(d == [{"Name": "StateMachineArn", "Value": {"Ref": machine}}] for d in watched.values())
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_without_an_endpoint_only_the_dlq_alarm_exists(no_model: Synthesized) -> None:
    # Uploads wait in the queue by design until a model is deployed: age, stall and endpoint alarms would lie
    assert not [k for k in alarms(no_model) if k.startswith("Monitoring")]
    assert [
        w for w in dashboard_widgets(no_model) if "No endpoint deployed" in w["properties"].get("markdown", "")
    ]
    assert "AWS/SageMaker" not in json.dumps(dashboard_widgets(no_model))


def test_thresholds_come_from_config_and_alarms_go_to_a_configured_topic(synth_app) -> None:
    s = synth_app(
        {
            "photo_labeler.endpoint.model_data_uri": MODEL_URI,
            "photo_labeler.alarm_topic_arn": TOPIC_ARN,
            "photo_labeler.monitoring.queue_age_alarm_seconds": "300",
            "photo_labeler.monitoring.stall_alarm_minutes": "30",
            "photo_labeler.monitoring.endpoint_5xx_alarm_threshold": "20",
            "photo_labeler.monitoring.backfill_failed_alarm": "false",
        }
    )
    assert alarm(s, "QueueAgeAlarm")["Threshold"] == 300
    assert alarm(s, "EndpointErrorsAlarm")["Threshold"] == 20
    stall = {m["Id"]: m for m in alarm(s, "StallAlarm")["Metrics"]}
    assert stall["waiting"]["MetricStat"]["Period"] == 1800
    assert not [k for k in alarms(s) if k.startswith("MonitoringBackfillFailed")]
    for key, props in alarms(s).items():
        if key.startswith("Monitoring"):
            assert props["AlarmActions"] == [TOPIC_ARN] and props["OKActions"] == [TOPIC_ARN]


# -- dashboard -----------------------------------------------------------------------------------------------


def test_photo_rates_are_graphed_per_path(with_model: Synthesized) -> None:
    uploads = widget(with_model, "Photos per minute (uploads)")
    backfill = widget(with_model, "Photos per minute (backfill)")
    expected = ["PhotosLabeled", "PhotosNeedsReview", "PhotosRejected", "PhotosSkipped"]
    assert metric_names(uploads) == metric_names(backfill) == expected
    assert all("photo-labeler" in row for row in uploads["metrics"])
    assert all("photo-labeler-backfill" in row for row in backfill["metrics"])
    assert uploads["stacked"] is True
    assert all(row[-1]["period"] == 60 and row[-1]["stat"] == "Sum" for row in uploads["metrics"])  # per minute


def test_label_distribution_has_one_series_per_taxonomy_label(with_model: Synthesized) -> None:
    labels = Taxonomy.load().labels
    for path in ("uploads", "backfill"):
        pie = widget(with_model, f"Label distribution ({path}")
        assert pie["view"] == "pie" and pie["setPeriodToTimeRange"] is True
        assert metric_names(pie) == ["PhotosByLabel"] * len(labels)
        assert [row[row.index("label") + 1] for row in pie["metrics"]] == list(labels)


def test_endpoint_widgets_show_invocations_errors_latency_concurrency_and_instances(
    with_model: Synthesized,
) -> None:
    invocations = widget(with_model, "Endpoint invocations")
    assert metric_names(invocations) == ["Invocations", "Invocation4XXErrors", "Invocation5XXErrors"]
    latency = json.dumps(widget(with_model, "Model latency"))
    assert "ModelLatency" in latency and "EndpointLatency" in latency and "/ 1000" in latency
    scaling = widget(with_model, "Concurrency and instances")
    assert metric_names(scaling) == ["ConcurrentRequestsPerModel", "CPUUtilization"]
    assert scaling["metrics"][1][-1]["stat"] == "SampleCount"  # one sample per instance per minute


def test_queue_dlq_and_backfill_progress_are_on_the_dashboard(with_model: Synthesized) -> None:
    assert metric_names(widget(with_model, "Upload queue: age")) == ["ApproximateAgeOfOldestMessage"]
    depth = widget(with_model, "Queue depth and dead-letter queue")
    visible, not_visible = "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"
    assert metric_names(depth) == [visible, not_visible, visible]  # waiting, in flight, DLQ
    assert "UploadPathDeadLetterQueue" in json.dumps(depth)
    progress = json.dumps(widget(with_model, "Backfill progress"))
    assert "photo-labeler-backfill" in progress and re.search(r"FILL\(p0, 0\)", progress)
    executions = widget(with_model, "Backfill executions")
    assert metric_names(executions) == [
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsAborted",
    ]


def test_dashboard_is_named_after_the_stack(with_model: Synthesized) -> None:
    assert (
        with_model.only("AWS::CloudWatch::Dashboard")["Properties"]["DashboardName"] == "photo-labeler-operations"
    )
    assert with_model.json["Outputs"]["DashboardName"]["Value"] == {
        "Ref": next(iter(with_model.resources("AWS::CloudWatch::Dashboard")))
    }


def test_review_widgets_graph_the_review_apis_metrics_in_the_apps_namespace(no_model: Synthesized) -> None:
    # Given the app as committed (the review page is on by default; the widgets need no endpoint)
    namespace, service = "HotelPhotoLabeler", "photo-review"
    # Then the backlog of unsure labels is graphed at the probe's own period (review.backlog_probe_minutes 15)
    backlog = widget(no_model, "Review backlog")
    assert metric_names(backlog) == ["ReviewBacklog"]
    assert backlog["metrics"][0][:4] == [namespace, "ReviewBacklog", "service", service]
    assert backlog["metrics"][0][-1]["stat"] == "Maximum" and backlog["metrics"][0][-1]["period"] == 900
    # And decisions per hour by kind, with conflicts, leads' overrides and undos beside them
    hourly = widget(no_model, "Review decisions per hour")
    assert metric_names(hourly) == ["ReviewDecisionsByKind"] * 3 + [
        "ReviewConflicts",
        "ReviewOverrides",
        "ReviewUndos",
    ]
    kinds = [row[row.index("decision") + 1] for row in hourly["metrics"] if "decision" in row]
    assert kinds == ["confirm", "correct", "reject"]
    assert all(row[0] == namespace and service in row and row[-1]["period"] == 3600 for row in hourly["metrics"])
    # And the reviewers' agreement with the model: shares of a day's decisions, and decisions per day
    agreement = widget(no_model, "Reviewer agreement")
    expressions = [row[0]["expression"] for row in agreement["metrics"] if "expression" in row[0]]
    assert [e.split("100 * ")[1].split(" /")[0] for e in expressions] == [
        "FILL(confirm, 0)",
        "FILL(correct, 0)",
        "FILL(reject, 0)",
    ]
    assert "ReviewDecisions" in metric_names(agreement)
    assert all(row[-1]["period"] == 86400 for row in agreement["metrics"] if isinstance(row[0], str))
    assert agreement["yAxis"]["left"]["max"] == 100


def test_the_backlog_widget_follows_the_probe_interval_and_leaves_with_the_review_page(synth_app) -> None:
    # Given the review page probing its backlog hourly, and the app without the review page
    hourly_probe = synth_app({"photo_labeler.review.backlog_probe_minutes": "60"})
    without = synth_app({"photo_labeler.review.enabled": "false"})
    # Then the backlog is graphed hourly in the first, and no review widget exists in the second
    assert widget(hourly_probe, "Review backlog")["metrics"][0][-1]["period"] == 3600
    titles = [w["properties"].get("title", "") for w in dashboard_widgets(without)]
    assert titles and not [title for title in titles if "Review" in title]
    assert "ReviewBacklog" not in json.dumps(dashboard_widgets(without))


# -- config --------------------------------------------------------------------------------------------------


def test_defaults_apply_when_the_section_is_absent() -> None:
    assert AppConfig.from_context({}).monitoring == MonitoringConfig()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("queue_age_alarm_seconds", 30, "60..1209600"),
        ("stall_alarm_minutes", 2, "5..1440"),
        ("endpoint_5xx_alarm_threshold", 0, ">= 1"),
        ("backfill_failed_alarm", "yes", "true or false"),
    ],
)
def test_invalid_values_fail_naming_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        AppConfig.from_context({"monitoring": {key: value}})
    assert raised.value.key == f"photo_labeler.monitoring.{key}"
