"""Gate: in every variant, each delivery the template wires is allowed by the policy where it lands.

A resource policy replaces the service default, so a topic, queue, bucket, function or key with a policy must name
every AWS service the stack wires to deliver into it, or the delivery fails silently at run time (AWS Knowledge
Center, "Why didn't I receive an SNS notification for my CloudWatch alarm trigger?"; the other sources are listed
in tests/stacks/resource_policies.py). The deliveries are derived from the template's wiring; the negative controls
below put back the defects this gate exists for and check that it names them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.stacks.conftest import VARIANTS, Synthesized
from tests.stacks.policy_evaluation import TemplateView, UnsupportedPolicy, decision
from tests.stacks.resource_policies import deliveries, problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_wired_delivery_is_allowed_where_it_lands(variant: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    found = deliveries(TemplateView(synthesized.json, synthesized.region))
    # The derivation sees the wiring every variant has: alarms → the alarm topic (and its key), S3 → the upload
    # queue (and its key), server access logs, CloudWatch Logs on the data key
    senders = {(d.sender, d.receiver.rstrip("0123456789ABCDEF")) for d in found}
    assert {
        ("cloudwatch.amazonaws.com", "AlarmTopic"),
        ("cloudwatch.amazonaws.com", "StorageKey"),
        ("s3.amazonaws.com", "UploadPathQueue"),
        ("s3.amazonaws.com", "UploadPathQueueKey"),
        ("logging.s3.amazonaws.com", "StorageAccessLogBucket"),
        (f"logs.{synthesized.region}.amazonaws.com", "StorageKey"),
    } <= senders
    assert problems(synthesized.json, synthesized.region) == []


def test_the_async_variant_wires_sns_to_its_queue_and_sagemaker_to_its_topics(async_mode: Synthesized) -> None:
    found = {
        (d.sender.split(":")[0], d.receiver.rstrip("0123456789ABCDEF"))
        for d in deliveries(TemplateView(async_mode.json))
    }
    assert {
        ("sns.amazonaws.com", "AsyncInferenceQueue"),
        ("sns.amazonaws.com", "AsyncInferenceQueueKey"),
        ("role", "AsyncInferenceSuccessTopic"),
        ("role", "AsyncInferenceTopicKey"),
    } <= found


# --- negative controls: each puts one defect back into a real template ------------------------------------------


def _mutated(synthesized: Synthesized, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    template = copy.deepcopy(synthesized.json)
    change(template)
    return template


def _resource(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    (found,) = [r for lid, r in template["Resources"].items() if lid.rstrip("0123456789ABCDEF") == prefix]
    return found


def _drop_statements(document: dict[str, Any], predicate: Callable[[dict[str, Any]], bool]) -> None:
    before = len(document["Statement"])
    document["Statement"] = [s for s in document["Statement"] if not predicate(s)]
    assert len(document["Statement"]) < before, "the control removed nothing"


def _names(service: str) -> Callable[[dict[str, Any]], bool]:
    return lambda statement: service in json.dumps(statement.get("Principal", ""))


def test_negative_control_a_topic_policy_that_only_denies_plain_http_refuses_every_alarm(
    with_model: Synthesized,
) -> None:
    # Given the alarm topic policy as it was: enforce_ssl's deny statement and nothing else
    template = _mutated(
        with_model,
        lambda t: _drop_statements(
            _resource(t, "AlarmTopicPolicy")["Properties"]["PolicyDocument"], _names("cloudwatch")
        ),
    )
    # Then every alarm that notifies the topic is reported, by name
    found = problems(template)
    assert found and all("AlarmTopic" in line and "cloudwatch.amazonaws.com sns:Publish" in line for line in found)
    for name in ("photo-labeler-upload-dlq", "photo-labeler-endpoint-5xx", "photo-labeler-training-failed"):
        assert any(f"alarm:{name} " in line for line in found), name


def test_negative_control_a_key_that_does_not_admit_cloudwatch_refuses_the_encrypted_topic(
    with_model: Synthesized,
) -> None:
    template = _mutated(
        with_model,
        lambda t: _drop_statements(_resource(t, "StorageKey")["Properties"]["KeyPolicy"], _names("cloudwatch")),
    )
    found = problems(template)
    assert found and all(line.startswith("StorageKey") and "kms:" in line for line in found)


def test_negative_control_an_alarm_scoped_out_of_the_topic_policy_is_refused(with_model: Synthesized) -> None:
    # Given one alarm renamed outside the <name_prefix>-* pattern the topic policy admits
    def rename(template: dict[str, Any]) -> None:
        _resource(template, "UploadPathDeadLetterQueueAlarm")["Properties"]["AlarmName"] = "someone-else-dlq"

    found = problems(_mutated(with_model, rename))
    assert found and all("alarm:someone-else-dlq " in line for line in found)


def test_negative_control_an_unnamed_alarm_on_the_topic_cannot_be_checked(with_model: Synthesized) -> None:
    def unname(template: dict[str, Any]) -> None:
        del _resource(template, "MonitoringStallAlarm")["Properties"]["AlarmName"]

    found = problems(_mutated(with_model, unname))
    assert any(line.startswith("MonitoringStallAlarm") and "without an AlarmName" in line for line in found)


def test_negative_control_s3_missing_from_the_queue_key_refuses_the_notifications(
    with_model: Synthesized,
) -> None:
    template = _mutated(
        with_model,
        lambda t: _drop_statements(
            _resource(t, "UploadPathQueueKey")["Properties"]["KeyPolicy"], _names("s3.amazonaws.com")
        ),
    )
    found = problems(template)
    assert found and all("UploadPathQueueKey" in line and "s3.amazonaws.com" in line for line in found)


def test_negative_control_a_queue_policy_naming_another_topic_refuses_the_subscription(
    async_mode: Synthesized,
) -> None:
    # Given the notification queue's policy admitting SNS for some other topic only
    def other_topic(template: dict[str, Any]) -> None:
        for statement in _resource(template, "AsyncInferenceQueuePolicy")["Properties"]["PolicyDocument"][
            "Statement"
        ]:
            if "sns" in json.dumps(statement.get("Principal", "")):
                statement["Condition"]["ArnEquals"]["aws:SourceArn"] = "arn:aws:sns:us-east-1:123456789012:x"

    found = problems(_mutated(async_mode, other_topic))
    assert len(found) == 2 and all("photo-labeler-async-" in line for line in found)


def test_negative_control_a_site_bucket_without_the_oac_statement_refuses_cloudfront(
    with_model: Synthesized,
) -> None:
    template = _mutated(
        with_model,
        lambda t: _drop_statements(
            _resource(t, "ReviewSiteBucketPolicy")["Properties"]["PolicyDocument"], _names("cloudfront")
        ),
    )
    (found,) = problems(template)
    assert found.startswith("ReviewSiteBucket") and "cloudfront.amazonaws.com s3:GetObject" in found


def test_negative_control_a_removed_lambda_permission_refuses_the_schedule(with_model: Synthesized) -> None:
    def drop(template: dict[str, Any]) -> None:
        (permission,) = [
            lid
            for lid, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["Principal"] == "events.amazonaws.com"
        ]
        del template["Resources"][permission]

    (found,) = problems(_mutated(with_model, drop))
    assert found.startswith("ReviewApiFunction") and "events.amazonaws.com lambda:InvokeFunction" in found


def test_negative_control_server_access_logs_into_an_sse_kms_bucket_are_reported(with_model: Synthesized) -> None:
    def kms(template: dict[str, Any]) -> None:
        rule = _resource(template, "StorageAccessLogBucket")["Properties"]["BucketEncryption"]
        rule["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] = {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {
                "Fn::GetAtt": [next(k for k in template["Resources"] if k.startswith("StorageKey")), "Arn"]
            },
        }

    found = problems(_mutated(with_model, kms))
    assert any("an SSE-KMS bucket: S3 server access logs need SSE-S3" in line for line in found)


# --- the evaluator itself ----------------------------------------------------------------------------------------


def _allow(condition: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": "*",
            "Condition": condition,
        }
    ]


def test_arn_like_wildcards_do_not_cross_the_colons_of_an_arn() -> None:
    # IAM User Guide, condition operators: each of the six colon-delimited ARN parts is matched on its own
    statements = _allow({"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:123456789012:alarm:app-*"}})
    call = ("cloudwatch.amazonaws.com", "sns:Publish", "arn:aws:sns:us-east-1:123456789012:t")
    good = {"aws:sourcearn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:app-dlq"}
    assert decision(statements, *call, good) == "allow"
    other_account = {"aws:sourcearn": "arn:aws:cloudwatch:us-east-1:999999999999:alarm:app-dlq"}
    assert decision(statements, *call, other_account) is None
    assert decision(statements, *call, {}) is None  # no source: the condition cannot hold


def test_an_explicit_deny_wins_and_an_unknown_operator_is_never_guessed() -> None:
    call = ("cloudwatch.amazonaws.com", "sns:Publish", "arn:aws:sns:us-east-1:123456789012:t")
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sns:*", "Resource": "*"}
    assert decision([*_allow({}), deny], *call, {}) == "deny"
    with pytest.raises(UnsupportedPolicy, match="NumericLessThan"):
        decision(_allow({"NumericLessThan": {"aws:EpochTime": "1"}}), *call, {"aws:epochtime": "0"})


def test_negative_control_cloudfront_logs_into_a_bucket_without_acls_are_reported(with_model: Synthesized) -> None:
    # Given the access-log bucket as it was: ACLs disabled (bucket owner enforced)
    def enforced(template: dict[str, Any]) -> None:
        rules = _resource(template, "StorageAccessLogBucket")["Properties"]["OwnershipControls"]["Rules"]
        rules[0]["ObjectOwnership"] = "BucketOwnerEnforced"

    (found,) = problems(_mutated(with_model, enforced))
    assert found.startswith("ReviewDistribution") and "ACLs are disabled (BucketOwnerEnforced)" in found
