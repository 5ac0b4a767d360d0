"""The alarm topic admits CloudWatch for this stack's alarms only, and every alarm that notifies it is named so."""

from __future__ import annotations

import pytest

from stacks.monitoring.alarm_topic import alarm_name
from tests.stacks.conftest import VARIANTS, Synthesized
from tests.stacks.intrinsics import resolve

PATTERN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:photo-labeler-*"


def _cloudwatch_statements(document: dict, synthesized: Synthesized) -> list[dict]:
    return [
        resolve(statement, synthesized.json)
        for statement in document["Statement"]
        if statement.get("Principal", {}) == {"Service": "cloudwatch.amazonaws.com"}
    ]


def test_cloudwatch_may_publish_for_this_accounts_alarms_of_this_stack(with_model: Synthesized) -> None:
    # AWS Knowledge Center, "Why didn't I receive an SNS notification for my CloudWatch alarm trigger?": a topic
    # policy must allow cloudwatch.amazonaws.com sns:Publish; aws:SourceArn narrows it to chosen alarms.
    policy = with_model.only("AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"]
    (publish,) = _cloudwatch_statements(policy, with_model)
    assert publish["Effect"] == "Allow" and publish["Action"] == "sns:Publish"
    assert publish["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": PATTERN},
    }
    # The SSE-KMS topic's key lets CloudWatch encrypt on the same terms
    (key,) = [k for lid, k in with_model.resources("AWS::KMS::Key").items() if lid.startswith("StorageKey")]
    (encrypt,) = _cloudwatch_statements(key["Properties"]["KeyPolicy"], with_model)
    assert sorted(encrypt["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert encrypt["Condition"] == publish["Condition"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_alarm_that_notifies_the_topic_is_named_after_the_prefix(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    (topic,) = synthesized.resources("AWS::SNS::Topic").keys() - {
        lid for lid in synthesized.resources("AWS::SNS::Topic") if lid.startswith("AsyncInference")
    }
    notifying = {
        lid: alarm["Properties"].get("AlarmName")
        for lid, alarm in synthesized.resources("AWS::CloudWatch::Alarm").items()
        if {"Ref": topic} in alarm["Properties"].get("AlarmActions", [])
    }
    assert notifying, "no alarm notifies the alarm topic"
    unnamed = [
        lid for lid, name in notifying.items() if not (name or "").startswith(alarm_name("photo-labeler", ""))
    ]
    assert unnamed == []


def test_a_topic_of_the_deployer_gets_no_policy_or_key_grant_from_the_stack(synth_app) -> None:
    # alarm_topic_arn: the deployer's topic and its policy; the stack adds neither a topic nor a CloudWatch grant
    synthesized = synth_app({"photo_labeler.alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:ops"})
    assert synthesized.resources("AWS::SNS::Topic") == {}
    for key in synthesized.resources("AWS::KMS::Key").values():
        assert _cloudwatch_statements(key["Properties"]["KeyPolicy"], synthesized) == []


@pytest.mark.slow
def test_the_runbook_gives_each_named_alarm_its_name(request: pytest.FixtureRequest) -> None:
    # An operator gets a notification carrying the alarm's name: docs/operations.md must lead from it to the entry
    from tests.stacks.test_runbook import RUNBOOK, runbook_entries

    headings = {
        line.split("`")[1]: line
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("### `")
    }
    assert runbook_entries(RUNBOOK.read_text(encoding="utf-8")).keys() == headings.keys()
    for variant in VARIANTS:
        synthesized: Synthesized = request.getfixturevalue(variant)
        endpoint = synthesized.stack.endpoint_name
        for logical_id, alarm in synthesized.resources("AWS::CloudWatch::Alarm").items():
            name = alarm["Properties"].get("AlarmName")
            if name is not None:
                documented = name.replace(endpoint, "<EndpointName>").replace("photo-labeler-", "<name_prefix>-")
                assert f"(named `{documented}`)" in headings[logical_id[:-8]], (variant, logical_id)
