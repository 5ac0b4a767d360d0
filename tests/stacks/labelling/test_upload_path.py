"""S3 notification → SQS (+DLQ) → Lambda: wiring, settings from config, least privilege, alarm."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from tests.stacks.conftest import Synthesized


def _function(s: Synthesized) -> dict[str, Any]:
    (function,) = [
        f
        for f in s.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "handler.lambda_handler"
    ]
    return function["Properties"]


def _function_statements(s: Synthesized) -> list[dict[str, Any]]:
    (policy,) = [
        p
        for p in s.resources("AWS::IAM::Policy").values()
        if json.dumps(p["Properties"]["Roles"]).count("UploadPathFunctionRole") == 1
    ]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_queue_and_dlq_are_kms_encrypted_tls_only_and_redrive_after_max_receive_count(
    no_model: Synthesized,
) -> None:
    queues = no_model.resources("AWS::SQS::Queue")
    assert len(queues) == 2
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    (main,) = [q["Properties"] for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert main["RedrivePolicy"]["maxReceiveCount"] == 5
    assert main["VisibilityTimeout"] == 6 * _function(no_model)["Timeout"]
    for policy in no_model.resources("AWS::SQS::QueuePolicy").values():
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_only_objects_created_under_the_upload_prefix_are_queued(no_model: Synthesized) -> None:
    notification = no_model.only("Custom::S3BucketNotifications")["Properties"]["NotificationConfiguration"]
    (config,) = notification["QueueConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}


def test_function_runtime_handler_and_environment_follow_the_interface(with_model: Synthesized) -> None:
    function = _function(with_model)
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["x86_64"]
    assert function["Timeout"] == 300  # two worst-case records (stacks/config/app_config.py checks the arithmetic)
    # The measured worst-case peak (495 MB) x 1.25 in 64-MB steps; less memory bills fewer GB-s while it waits
    assert function["MemorySize"] == 640
    env = function["Environment"]["Variables"]
    assert set(env) == {
        "TABLE_NAME",
        "ENDPOINT_NAME",
        "MODEL_ID",
        "CONFIDENCE_THRESHOLD",
        "HOTEL_ID_PATTERN",
        "UPLOAD_PREFIX",
        "TAXONOMY_FILE",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }
    assert env["ENDPOINT_NAME"] == "photo-labeler-llava-realtime-g5-xlarge"
    assert env["MODEL_ID"] == "s3://example-models/llava-run-7/model/"
    assert env["CONFIDENCE_THRESHOLD"] == "0.8"
    assert env["HOTEL_ID_PATTERN"] == "^uploads/(?P<hotel_id>[^/]+)/"
    assert env["TAXONOMY_FILE"] == "classification/taxonomy.json"
    assert env["POWERTOOLS_SERVICE_NAME"] == "photo-labeler"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "HotelPhotoLabeler"


def test_function_is_traced_and_logs_to_its_own_encrypted_log_group(with_model: Synthesized) -> None:
    # Given the upload labeller
    function = _function(with_model)
    # Then every invocation is traced end to end (S3 read, endpoint call, table write)
    assert function["TracingConfig"] == {"Mode": "Active"}
    # And it logs to a named log group encrypted with the data key, kept a month
    group_id = function["LoggingConfig"]["LogGroup"]["Ref"]
    group = with_model.resources("AWS::Logs::LogGroup")[group_id]["Properties"]
    (key_id,) = [k for k in with_model.resources("AWS::KMS::Key") if k.startswith("StorageKey")]
    assert group["LogGroupName"] == "/photo-labeler/lambda/labeller"
    assert group["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert group["RetentionInDays"] == 30


def test_event_source_reports_partial_failures_with_configured_batch_and_concurrency(
    with_model: Synthesized,
) -> None:
    with_model.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 4,
            # max_capacity 4 x target 6: enough requests in flight to scale the endpoint to its whole fleet
            "ScalingConfig": {"MaximumConcurrency": 24},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "Enabled": True,
        },
    )


def test_without_a_model_uploads_wait_in_the_queue(no_model: Synthesized) -> None:
    no_model.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {"Enabled": False})
    assert _function(no_model)["Environment"]["Variables"]["MODEL_ID"] == "none"
    assert not any("sagemaker" in json.dumps(s["Action"]) for s in _function_statements(no_model))


def test_function_invokes_only_this_endpoint_reads_only_uploads_writes_only_this_table(
    with_model: Synthesized,
) -> None:
    statements = _function_statements(with_model)
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    # No wildcard actions, and resource "*" only for X-Ray's two actions (they have no resource level).
    assert not any("*" in action for action in actions)
    assert [sorted(s["Action"]) for s in statements if s["Resource"] == "*"] == [
        ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    ]
    (endpoint_id,) = with_model.resources("AWS::SageMaker::Endpoint")
    invoke = next(s for s in statements if s["Action"] == "sagemaker:InvokeEndpoint")
    assert invoke["Resource"] == {"Ref": endpoint_id}
    # Photos under uploads/, and the served model's profile record (one key of the model's prefix)
    (read,) = [s for s in statements if s["Action"] == "s3:GetObject"]
    (photos,) = [r for r in map(json.dumps, read["Resource"]) if "model_profile.json" not in r]
    (record,) = [r for r in map(json.dumps, read["Resource"]) if "model_profile.json" in r]
    assert photos.endswith('"/uploads/*"]]}')
    assert record.endswith(':s3:::example-models/llava-run-7/model/model_profile.json"]]}')
    listings = [s["Condition"] for s in statements if s["Action"] == "s3:ListBucket"]
    assert sorted(json.dumps(c) for c in listings) == sorted(
        json.dumps({"StringLike": {"s3:prefix": [prefix]}})
        for prefix in ("uploads/*", "llava-run-7/model/model_profile.json")
    )
    # The labels table, not the review page's decision history (the function never touches that one).
    (table_id,) = [t for t in with_model.resources("AWS::DynamoDB::Table") if t.startswith("StorageLabelsTable")]
    table = next(s for s in statements if "dynamodb:PutItem" in s["Action"])
    assert sorted(table["Action"]) == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert table["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}
    # Nothing that deletes, scans or queries.
    assert not actions & {
        "dynamodb:DeleteItem",
        "dynamodb:Scan",
        "dynamodb:Query",
        "s3:PutObject",
        "s3:DeleteObject",
    }


def test_dlq_depth_alarm_notifies_the_alarm_topic(no_model: Synthesized) -> None:
    (topic_id,) = no_model.resources("AWS::SNS::Topic")
    no_model.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Namespace": "AWS/SQS",
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": [{"Ref": topic_id}],
            "Dimensions": [
                {
                    "Name": "QueueName",
                    "Value": {"Fn::GetAtt": [Match.string_like_regexp("DeadLetterQueue"), "QueueName"]},
                }
            ],
        },
    )
    no_model.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})


def test_an_existing_alarm_topic_is_used_instead_of_creating_one(synth_app) -> None:
    arn = "arn:aws:sns:eu-west-1:123456789012:ops-alarms"
    s = synth_app({"photo_labeler.alarm_topic_arn": arn})
    assert s.resources("AWS::SNS::Topic") == {}
    s.template.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmActions": [arn]})
