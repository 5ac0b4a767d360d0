"""endpoint.mode async in the synthesized template: the endpoint's AsyncInferenceConfig, scaling to and from zero,
the notification path and label writer, least privilege, alarms, and config validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cdk_nag import AwsSolutionsChecks

from stacks.config import AppConfig, ConfigError
from stacks.serving.async_inference import AsyncInferenceConfig
from tests.stacks.conftest import Synthesized

# The scaling policies are AWS's documented ones for async endpoints (AUTOSCALE_DOC in the tests below):
# https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html


def _logical_id(s: Synthesized, type_name: str, prefix: str) -> str:
    (found,) = [name for name in s.resources(type_name) if name.startswith(prefix)]
    return found


def _role_statements(s: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in s.resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if f'"{role_prefix}' in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements, f"no policy for {role_prefix}"
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _resources_for(statements: list[dict[str, Any]], action: str) -> list[Any]:
    found: list[Any] = []
    for statement in statements:
        if action in _actions(statement):
            resources = statement["Resource"]
            found += resources if isinstance(resources, list) else [resources]
    return found


def _as_set(values: list[Any]) -> list[str]:
    """IAM resources in any order (the template's order follows policy minimisation, not ours)."""
    return sorted(json.dumps(value, sort_keys=True) for value in values)


def _function(s: Synthesized, handler: str) -> dict[str, Any]:
    (function,) = [
        f["Properties"]
        for f in s.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    ]
    return function


def test_the_endpoint_config_carries_the_async_inference_config(async_mode: Synthesized) -> None:
    bucket = _logical_id(async_mode, "AWS::S3::Bucket", "AsyncInferenceBucket")
    data_key = _logical_id(async_mode, "AWS::KMS::Key", "StorageKey")
    success = _logical_id(async_mode, "AWS::SNS::Topic", "AsyncInferenceSuccessTopic")
    error = _logical_id(async_mode, "AWS::SNS::Topic", "AsyncInferenceErrorTopic")
    config = async_mode.only("AWS::SageMaker::EndpointConfig")["Properties"]
    assert config["AsyncInferenceConfig"] == {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 8},
        "OutputConfig": {
            "S3OutputPath": {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/responses/"]]},
            "S3FailurePath": {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/failures/"]]},
            "KmsKeyId": {"Fn::GetAtt": [data_key, "Arn"]},
            "NotificationConfig": {"SuccessTopic": {"Ref": success}, "ErrorTopic": {"Ref": error}},
        },
    }
    # CreateEndpoint needs an instance; autoscaling takes it to zero when idle
    (variant,) = config["ProductionVariants"]
    assert variant["InitialInstanceCount"] == 1


def test_the_real_time_endpoint_has_no_async_config_and_no_async_resources(with_model: Synthesized) -> None:
    assert "AsyncInferenceConfig" not in with_model.only("AWS::SageMaker::EndpointConfig")["Properties"]
    assert with_model.resources("AWS::SNS::Topic").keys() == {
        name for name in with_model.resources("AWS::SNS::Topic") if name.startswith("AlarmTopic")
    }
    assert not [f for f in with_model.resources("AWS::Lambda::Function").values() if "async" in json.dumps(f)]
    environment = _function(with_model, "handler.lambda_handler")["Environment"]["Variables"]
    assert "ENDPOINT_MODE" not in environment


def test_scaling_tracks_the_backlog_per_instance_down_to_zero(async_mode: Synthesized) -> None:
    # AWS's documented target tracking policy for async endpoints (AUTOSCALE_DOC)
    target = async_mode.only("AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 4)
    policies = [
        p["Properties"] for p in async_mode.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    (tracking,) = [p for p in policies if p["PolicyType"] == "TargetTrackingScaling"]
    configuration = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert configuration["TargetValue"] == 200
    assert configuration["CustomizedMetricSpecification"] == {
        "Dimensions": [{"Name": "EndpointName", "Value": "photo-labeler-llava-async-g5-xlarge"}],
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Average",
    }
    assert (configuration["ScaleInCooldown"], configuration["ScaleOutCooldown"]) == (600, 60)
    # and the real-time concurrency policy is gone: it would never see a request at zero instances
    assert "ConcurrentRequestsPerModel" not in json.dumps(policies)


def test_a_backlog_without_capacity_starts_an_instance_by_step_scaling(async_mode: Synthesized) -> None:
    # AWS's documented "scale up from zero" policy (AUTOSCALE_DOC): +1 instance when HasBacklogWithoutCapacity >= 1
    policies = async_mode.resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    (step_id,) = [name for name, p in policies.items() if p["Properties"]["PolicyType"] == "StepScaling"]
    step = policies[step_id]["Properties"]["StepScalingPolicyConfiguration"]
    assert step == {
        "AdjustmentType": "ChangeInCapacity",
        "Cooldown": 300,
        "MetricAggregationType": "Average",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }
    async_mode.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "HasBacklogWithoutCapacity",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": "photo-labeler-llava-async-g5-xlarge"}],
            "Statistic": "Average",
            "Period": 60,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "AlarmActions": [{"Ref": step_id}],
        },
    )


def test_upload_and_backfill_submit_with_exactly_invoke_endpoint_async_and_request_writes(
    async_mode: Synthesized,
) -> None:
    endpoint = _logical_id(async_mode, "AWS::SageMaker::Endpoint", "InferenceEndpoint")
    bucket = _logical_id(async_mode, "AWS::S3::Bucket", "AsyncInferenceBucket")
    requests = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/requests/*"]]}
    for role, handler in (
        ("UploadPathFunctionRole", "handler.lambda_handler"),
        ("BackfillFunctionRole", "handler.backfill_handler"),
    ):
        statements = _role_statements(async_mode, role)
        assert _resources_for(statements, "sagemaker:InvokeEndpointAsync") == [{"Ref": endpoint}]
        assert _resources_for(statements, "sagemaker:InvokeEndpoint") == []
        assert _resources_for(statements, "s3:PutObject") == [requests]
        environment = _function(async_mode, handler)["Environment"]["Variables"]
        assert environment["ENDPOINT_MODE"] == "async"
        assert environment["ASYNC_REQUEST_BUCKET"] == {"Ref": bucket}
        assert (environment["ASYNC_REQUEST_PREFIX"], environment["ASYNC_MAX_ATTEMPTS"]) == ("requests/", "3")


def test_the_endpoint_role_reads_requests_writes_answers_and_publishes_only_to_its_topics(
    async_mode: Synthesized,
) -> None:
    bucket = _logical_id(async_mode, "AWS::S3::Bucket", "AsyncInferenceBucket")
    statements = _role_statements(async_mode, "InferenceExecutionRole")
    arn = {"Fn::GetAtt": [bucket, "Arn"]}
    assert {"Fn::Join": ["", [arn, "/requests/*"]]} in _resources_for(statements, "s3:GetObject")
    assert _as_set(_resources_for(statements, "s3:PutObject")) == _as_set(
        [{"Fn::Join": ["", [arn, "/responses/*"]]}, {"Fn::Join": ["", [arn, "/failures/*"]]}]
    )
    topics = sorted(name for name in async_mode.resources("AWS::SNS::Topic") if name.startswith("AsyncInference"))
    assert sorted(r["Ref"] for r in _resources_for(statements, "sns:Publish")) == topics


def test_notifications_reach_the_label_writer_through_an_encrypted_queue_with_a_dlq(
    async_mode: Synthesized,
) -> None:
    queue = _logical_id(async_mode, "AWS::SQS::Queue", "AsyncInferenceQueue")
    for subscription in async_mode.resources("AWS::SNS::Subscription").values():
        properties = subscription["Properties"]
        assert properties["Protocol"] == "sqs" and properties["RawMessageDelivery"] is True
        assert properties["Endpoint"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert len(async_mode.resources("AWS::SNS::Subscription")) == 2
    properties = async_mode.resources("AWS::SQS::Queue")[queue]["Properties"]
    assert properties["RedrivePolicy"]["maxReceiveCount"] == 5
    assert properties["VisibilityTimeout"] == 6 * 60
    for name, topic in async_mode.resources("AWS::SNS::Topic").items():
        assert "KmsMasterKeyId" in topic["Properties"], name
    writer = _function(async_mode, "async_handler.lambda_handler")
    assert (writer["Timeout"], writer["MemorySize"]) == (60, 256)
    assert writer["Environment"]["Variables"]["ENDPOINT_MODE"] == "async"
    async_mode.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 10},
        },
    )


def test_the_label_writer_reads_tickets_and_responses_writes_the_table_and_may_only_resubmit(
    async_mode: Synthesized,
) -> None:
    endpoint = _logical_id(async_mode, "AWS::SageMaker::Endpoint", "InferenceEndpoint")
    bucket = _logical_id(async_mode, "AWS::S3::Bucket", "AsyncInferenceBucket")
    table = _logical_id(async_mode, "AWS::DynamoDB::Table", "StorageLabelsTable")
    statements = _role_statements(async_mode, "AsyncLabelWriterFunctionRole")
    arn = {"Fn::GetAtt": [bucket, "Arn"]}
    # ... and the served model's profile record, to read each answer in the ticket's model's profile
    record = {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":s3:::example-models/llava-run-7/model/model_profile.json"],
        ]
    }
    assert _as_set(_resources_for(statements, "s3:GetObject")) == _as_set(
        [{"Fn::Join": ["", [arn, "/requests/*"]]}, {"Fn::Join": ["", [arn, "/responses/*"]]}, record]
    )
    assert _resources_for(statements, "s3:PutObject") == []
    assert _resources_for(statements, "sagemaker:InvokeEndpointAsync") == [{"Ref": endpoint}]
    assert _resources_for(statements, "dynamodb:PutItem") == [{"Fn::GetAtt": [table, "Arn"]}]
    assert (
        _resources_for(statements, "dynamodb:Scan") == []
        and _resources_for(statements, "dynamodb:DeleteItem") == []
    )


def test_async_alarms_page_and_the_dashboard_shows_the_backlog(async_mode: Synthesized) -> None:
    topic = _logical_id(async_mode, "AWS::SNS::Topic", "AlarmTopic")
    dlq = _logical_id(async_mode, "AWS::SQS::Queue", "AsyncInferenceDeadLetterQueue")
    async_mode.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}],
            "Threshold": 0,
            "AlarmActions": [{"Ref": topic}],
        },
    )
    async_mode.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateAgeOfOldestRequest",
            "Namespace": "AWS/SageMaker",
            "Statistic": "Maximum",
            "Threshold": 3600,
            "EvaluationPeriods": 5,
            "AlarmActions": [{"Ref": topic}],
        },
    )
    body = json.dumps(async_mode.only("AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for text in ("ApproximateBacklogSize", "HasBacklogWithoutCapacity", "AsyncInferencesFailed"):
        assert text in body


def test_the_request_bucket_is_encrypted_private_and_expires_its_objects(async_mode: Synthesized) -> None:
    bucket = async_mode.resources("AWS::S3::Bucket")[
        _logical_id(async_mode, "AWS::S3::Bucket", "AsyncInferenceBucket")
    ]
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (lifecycle,) = properties["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ExpirationInDays"] == 7
    assert properties["LoggingConfiguration"]["LogFilePrefix"] == "async-inference/"


def test_cdk_nag_finds_nothing_in_async_mode(async_mode: Synthesized) -> None:
    assert AwsSolutionsChecks().validate_scope(async_mode.stack).violations == []


@pytest.mark.parametrize(
    ("endpoint", "key", "message"),
    [
        ({"mode": "batch"}, "photo_labeler.endpoint.mode", "must be one of 'realtime', 'async'"),
        ({"min_capacity": 0}, "photo_labeler.endpoint.min_capacity", "only endpoint.mode 'async' scales to zero"),
        ({"mode": "async", "min_capacity": -1}, "photo_labeler.endpoint.min_capacity", "must be >= 0"),
        ({"mode": "async", "min_capacity": 0, "max_capacity": 0}, "photo_labeler.endpoint.max_capacity", ">= 1"),
    ],
)
def test_endpoint_mode_is_validated_with_errors_naming_the_key(
    endpoint: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        AppConfig.from_context({"endpoint": endpoint})
    assert error.value.key == key and message in str(error.value)


def test_async_mode_may_scale_to_zero_and_defaults_to_realtime() -> None:
    assert AppConfig.from_context({}).endpoint.mode == "realtime"
    assert AppConfig.from_context({"endpoint": {"mode": "async", "min_capacity": 0}}).endpoint.min_capacity == 0


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"invocation_timeout_seconds": 3601}, "invocation_timeout_seconds", "1..3600"),
        ({"request_ttl_seconds": 30}, "request_ttl_seconds", "60..21600"),
        ({"object_retention_days": 1}, "object_retention_days", "must be >= 2"),
        ({"max_concurrent_invocations_per_instance": 0}, "max_concurrent_invocations_per_instance", "1..1000"),
        ({"max_attempts": 0}, "max_attempts", "1..10"),
    ],
)
def test_async_settings_are_validated(settings: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        AppConfig.from_context({"async_inference": settings})
    assert error.value.key == f"photo_labeler.async_inference.{key}" and message in str(error.value)


def test_the_committed_cdk_json_deploys_realtime_with_the_declared_async_defaults() -> None:
    # cdk.json lists only what a deployer changes (tests/stacks/config/test_config.py): async settings come from
    # AsyncInferenceConfig's declared defaults until someone opts into endpoint.mode async.
    from tests.stacks.conftest import cdk_json_context

    config = AppConfig.from_context(cdk_json_context()["photo_labeler"])
    assert config.endpoint.mode == "realtime"
    assert config.async_inference == AsyncInferenceConfig()
