"""The SageMaker model, endpoint config, endpoint and autoscaling in the synthesized template."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match

from stacks.common.lmi_image import default_table
from stacks.config import ConfigError, EndpointSettings
from stacks.serving import serving_properties
from stacks.serving.inference_endpoint import InferenceEndpoint
from tests.stacks.conftest import MODEL_URI, Synthesized
from tests.stacks.intrinsics import resolve


def _logical_ids(s: Synthesized, type_name: str) -> list[str]:
    """Logical ids without CDK's 8-character hash suffix, sorted: which resources of a type exist, by name."""
    return sorted(name[:-8] for name in s.resources(type_name))


def test_no_model_means_no_endpoint_but_the_rest_deploys(no_model: Synthesized) -> None:
    # Given the committed config (model_data_uri null, training.serve_registered_model false)
    # Then nothing SageMaker is created, the buckets/table/queue/function and the training pipeline are, and an
    # output says so
    for type_name in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"):
        assert no_model.resources(type_name) == {}
    assert no_model.resources("AWS::ApplicationAutoScaling::ScalableTarget") == {}
    # The image bucket, its access-log bucket, the training bucket and the review page's; the backfill's results
    # bucket comes with the endpoint.
    assert _logical_ids(no_model, "AWS::S3::Bucket") == [
        "ModelStoreBucket",
        "ReviewSiteBucket",
        "StorageAccessLogBucket",
        "StorageImageBucket",
    ]
    # The labels table and the review page's append-only decision history.
    assert _logical_ids(no_model, "AWS::DynamoDB::Table") == ["ReviewHistoryTable", "StorageLabelsTable"]
    no_model.template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    machines = no_model.resources("AWS::StepFunctions::StateMachine").values()
    assert [m["Properties"]["StateMachineName"] for m in machines] == ["photo-labeler-training"]
    no_model.template.has_output("EndpointDeployed", {"Value": "false"})


def test_container_gets_exactly_the_serving_properties_as_option_env(with_model: Synthesized) -> None:
    model = with_model.only("AWS::SageMaker::Model")
    expected = serving_properties.to_environment(serving_properties.load())
    assert model["Properties"]["PrimaryContainer"]["Environment"] == expected


def test_model_is_network_isolated_and_served_from_an_uncompressed_prefix(with_model: Synthesized) -> None:
    with_model.template.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "EnableNetworkIsolation": True,
            "PrimaryContainer": {
                "Mode": "SingleModel",
                "ModelDataSource": {
                    "S3DataSource": {"S3Uri": MODEL_URI, "S3DataType": "S3Prefix", "CompressionType": "None"}
                },
            },
        },
    )


def test_environment_agnostic_image_is_resolved_by_a_region_mapping(with_model: Synthesized) -> None:
    # Given no region in config, the image account comes from a CfnMapping keyed by AWS::Region
    mappings = with_model.json["Mappings"]
    (registry,) = [m for name, m in mappings.items() if "LmiImageRegistry" in name]
    table = default_table().release("0.38.0")
    assert {region: entry["account"] for region, entry in registry.items()} == table.registries
    assert registry["cn-northwest-1"]["dnsSuffix"] == "amazonaws.com.cn"
    image = with_model.only("AWS::SageMaker::Model")["Properties"]["PrimaryContainer"]["Image"]
    rendered = json.dumps(image)
    assert '"Fn::FindInMap"' in rendered and '"Ref": "AWS::Region"' in rendered
    assert rendered.endswith('"/djl-inference:0.38.0-lmi29.0.0-cu130"]]}')


def test_regional_stack_uses_that_regions_ecr_account(regional: Synthesized) -> None:
    regional.template.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "PrimaryContainer": {
                "Image": "871362719292.dkr.ecr.ap-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130"
            }
        },
    )
    assert "Mappings" not in regional.json


def test_region_outside_the_image_table_fails_synth_naming_the_key(synth_app) -> None:
    with pytest.raises(ConfigError, match=r"^photo_labeler\.region: DJL LMI 0\.38\.0 is not published"):
        synth_app({"photo_labeler.region": "us-isob-west-1"})


def test_endpoint_config_runs_g5_xlarge_with_timeouts_covering_model_loading(with_model: Synthesized) -> None:
    loading = int(serving_properties.load()["option.model_loading_timeout"])
    variant = with_model.only("AWS::SageMaker::EndpointConfig")["Properties"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g5.xlarge"
    assert variant["InitialInstanceCount"] == 1
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] >= loading
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 1200
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    with_model.template.has_resource_properties(
        "AWS::SageMaker::Endpoint", {"EndpointName": "photo-labeler-llava-realtime-g5-xlarge"}
    )


def test_model_loading_timeout_longer_than_the_health_check_fails_synth() -> None:
    stack = cdk.Stack(cdk.App())
    with pytest.raises(ValueError, match=r"model_loading_timeout \(2000 s\).*container_startup_timeout_seconds"):
        InferenceEndpoint(
            stack,
            "Inference",
            config=EndpointSettings(container_startup_timeout_seconds=1800),
            endpoint_name="e",
            model_data_uri=MODEL_URI,
            serving_options={"option.model_loading_timeout": "2000"},
        )


def test_autoscaling_tracks_high_resolution_concurrency_and_scales_in_slower(with_model: Synthesized) -> None:
    with_model.template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 1,
            "MaxCapacity": 4,
            "ResourceId": {
                "Fn::Join": [
                    "",
                    ["endpoint/", {"Fn::GetAtt": [Match.any_value(), "EndpointName"]}, "/variant/AllTraffic"],
                ]
            },
        },
    )
    policy = with_model.only("AWS::ApplicationAutoScaling::ScalingPolicy")["Properties"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
    }
    assert tracking["TargetValue"] == 6
    assert tracking["ScaleInCooldown"] > tracking["ScaleOutCooldown"]


def test_model_role_reads_only_the_model_prefix_and_pulls_only_the_lmi_repository(with_model: Synthesized) -> None:
    # Given the two roles SageMaker assumes (the training pipeline's and the model's), the model's by its id
    sagemaker_roles = [
        name
        for name, role in with_model.resources("AWS::IAM::Role").items()
        if "sagemaker.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert len(sagemaker_roles) == 2
    (role_id,) = [name for name in sagemaker_roles if name.startswith("InferenceExecutionRole")]
    assert with_model.only("AWS::SageMaker::Model")["Properties"]["ExecutionRoleArn"] == {
        "Fn::GetAtt": [role_id, "Arn"]
    }
    (policy,) = [
        p
        for p in with_model.resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {json.dumps(s["Action"]): s for s in statements}
    get_object = by_action['"s3:GetObject"']
    assert json.dumps(get_object["Resource"]).endswith('":s3:::example-models/llava-run-7/model/*"]]}')
    assert by_action['"s3:ListBucket"']["Condition"] == {"StringLike": {"s3:prefix": ["llava-run-7/model/*"]}}
    ecr = next(s for s in statements if "ecr:BatchGetImage" in s["Action"])
    # The image's own account in the deploy region (us-east-1: AWS's 763104351884), never `*`
    expected = "arn:aws:ecr:us-east-1:763104351884:repository/djl-inference"
    assert resolve(ecr["Resource"], with_model.json) == expected
    # Nothing else is granted on every resource except the two actions that have no resource level.
    wildcard = sorted(
        action
        for s in statements
        if s["Resource"] == "*"
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert wildcard == ["cloudwatch:PutMetricData", "ecr:GetAuthorizationToken"]


# --- blue/green for `cdk deploy` ---------------------------------------------------------------------------------

ROLLOUT_ALARMS = [
    "photo-labeler-llava-realtime-g5-xlarge-rollout-5xx",
    "photo-labeler-llava-realtime-g5-xlarge-rollout-latency",
]


def _alarms_by_name(s: Synthesized) -> dict[str, tuple[str, dict]]:
    return {
        a["Properties"]["AlarmName"]: (logical_id, a["Properties"])
        for logical_id, a in s.resources("AWS::CloudWatch::Alarm").items()
        if "AlarmName" in a["Properties"]
    }


def test_a_deploy_that_changes_a_pinned_model_rolls_out_blue_green_and_rolls_back_on_alarms(
    with_model: Synthesized,
) -> None:
    # Given a pinned model (the pipeline never touches this endpoint: `cdk deploy` is the only way to change it)
    endpoint = with_model.only("AWS::SageMaker::Endpoint")
    # Then CloudFormation updates it blue/green, all at once, baking 15 min, and rolls back on the two alarms
    assert endpoint["Properties"]["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 900,
            "MaximumExecutionTimeoutInSeconds": 10800,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in ROLLOUT_ALARMS]},
    }
    # And the new fleet starts at the instance count autoscaling reached, not at min_capacity
    assert endpoint["Properties"]["RetainAllVariantProperties"] is True
    # And the alarms exist before the endpoint, watch this endpoint's variant, and page the alarm topic
    alarms = _alarms_by_name(with_model)
    assert set(ROLLOUT_ALARMS) <= set(alarms)
    assert {alarms[name][0] for name in ROLLOUT_ALARMS} <= set(endpoint["DependsOn"])
    (topic,) = with_model.resources("AWS::SNS::Topic")
    errors, latency = (alarms[name][1] for name in ROLLOUT_ALARMS)
    for alarm in (errors, latency):
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert alarm["Dimensions"] == [
            {"Name": "EndpointName", "Value": "photo-labeler-llava-realtime-g5-xlarge"},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ]
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic}]
    assert (errors["MetricName"], errors["Threshold"], errors["EvaluationPeriods"]) == (
        "Invocation5XXErrors",
        5,
        2,
    )
    assert (latency["MetricName"], latency["Threshold"], latency["ExtendedStatistic"]) == (
        "ModelLatency",
        30_000_000,  # 30 s in microseconds
        "p90",
    )


def test_rollout_settings_reach_the_cloudformation_endpoint(synth_app) -> None:
    # Given a canary rollout on an endpoint with at least two instances and a tighter latency bar
    synthesized = synth_app(
        {
            "photo_labeler.endpoint.model_data_uri": MODEL_URI,
            "photo_labeler.endpoint.min_capacity": "2",
            "photo_labeler.endpoint.rollout_canary_percent": "25",
            "photo_labeler.endpoint.rollout_canary_wait_seconds": "300",
            "photo_labeler.endpoint.rollback_p90_model_latency_seconds": "12.5",
        }
    )
    # Then a deploy shifts a quarter of the capacity first and waits before the rest
    config = synthesized.only("AWS::SageMaker::Endpoint")["Properties"]["DeploymentConfig"]
    policy = config["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
        "WaitIntervalInSeconds": 300,
    }
    assert _alarms_by_name(synthesized)[ROLLOUT_ALARMS[1]][1]["Threshold"] == 12_500_000


def test_a_canary_on_a_one_instance_pinned_endpoint_fails_synth_naming_the_key(synth_app) -> None:
    with pytest.raises(ConfigError, match=r"^photo_labeler\.endpoint\.rollout_canary_percent: a canary needs"):
        synth_app(
            {
                "photo_labeler.endpoint.model_data_uri": MODEL_URI,
                "photo_labeler.endpoint.rollout_canary_percent": "25",
            }
        )


@pytest.mark.parametrize("variant", ["with_model", "registry"])
def test_the_model_role_may_describe_exactly_the_two_rollback_alarms(
    variant: str, request: pytest.FixtureRequest
) -> None:
    # Given an endpoint whose updates roll back on alarms (pinned model or registry)
    synthesized: Synthesized = request.getfixturevalue(variant)
    (role_id,) = [k for k in synthesized.resources("AWS::IAM::Role") if k.startswith("InferenceExecutionRole")]
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.resources("AWS::IAM::Policy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    # Then its execution role may call cloudwatch:DescribeAlarms on those two alarms' ARNs and nothing else
    (describe,) = [s for s in policy if "cloudwatch:DescribeAlarms" in json.dumps(s["Action"])]
    assert describe["Action"] == "cloudwatch:DescribeAlarms"
    alarms = _alarms_by_name(synthesized)
    assert describe["Resource"] == [{"Fn::GetAtt": [alarms[name][0], "Arn"]} for name in ROLLOUT_ALARMS]


def test_the_endpoint_config_carries_no_kms_key_and_no_dead_nag_acknowledgement(with_model: Synthesized) -> None:
    # ml.g5 has hardware-encrypted local NVMe storage, for which SageMaker rejects a KmsKeyId; cdk-nag 3's SM2 is
    # a notebook-instance rule, so acknowledging it on the endpoint config would suppress nothing.
    assert "KmsKeyId" not in with_model.only("AWS::SageMaker::EndpointConfig")["Properties"]
    config = with_model.stack.inference.endpoint_config
    acknowledged = [m.data for m in config.node.metadata if m.type == "aws:cdk:acknowledged-rules"]
    assert not any("SM2" in json.dumps(data) for data in acknowledged)


def test_without_an_endpoint_there_are_no_rollout_alarms(no_model: Synthesized) -> None:
    assert not set(ROLLOUT_ALARMS) & set(_alarms_by_name(no_model))
