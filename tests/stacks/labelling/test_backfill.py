"""The backfill state machine: distributed mode, item readers, batching, concurrency bound, retries, results,
its IAM scope, and the config section that drives it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from typing import Any

import pytest
from cdk_nag import AwsSolutionsChecks

from stacks.config import AppConfig, BackfillConfig, ConfigError
from stacks.labelling.backfill import BACKFILL_SERVICE_NAME
from tests.stacks.conftest import MODEL_URI, PROJECT_ROOT, Synthesized

LAMBDA_DIR = PROJECT_ROOT / "lambda"

SCOPED = {
    "photo_labeler.endpoint.model_data_uri": MODEL_URI,
    "photo_labeler.backfill.source_prefix": "archive/",
    "photo_labeler.backfill.inventory_bucket": "photo-labeler-inventory",
    "photo_labeler.backfill.inventory_prefix": "reports/",
    "photo_labeler.backfill.max_concurrency": "4",
    "photo_labeler.backfill.items_per_batch": "40",
}


@pytest.fixture(scope="module")
def scoped(synth_app) -> Synthesized:
    """A backfill limited to archive/ with an S3 Inventory input."""
    return synth_app(SCOPED)


def logical_id(s: Synthesized, type_name: str, contains: str) -> str:
    (found,) = [k for k in s.resources(type_name) if contains in k]
    return found


def backfill_machine(s: Synthesized) -> dict[str, Any]:
    machine = logical_id(s, "AWS::StepFunctions::StateMachine", "Backfill")
    return s.resources("AWS::StepFunctions::StateMachine")[machine]["Properties"]


def definition(s: Synthesized) -> dict[str, Any]:
    """The state machine's ASL: a value that is a token becomes {"token": <intrinsic>}, one inside text <Ref>."""
    parts = backfill_machine(s)["DefinitionString"]["Fn::Join"][1]
    tokens: list[Any] = []
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
        else:
            tokens.append(part)
            text += f"@@{len(tokens) - 1}@@"
    asl = json.loads(text)

    def restore(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: restore(v) for k, v in node.items()}
        if isinstance(node, list):
            return [restore(v) for v in node]
        if isinstance(node, str) and re.fullmatch(r"@@\d+@@", node):
            return {"token": tokens[int(node.strip("@"))]}
        if isinstance(node, str):  # a token inside a string: <AWS::Partition>, <LogicalId>
            return re.sub(r"@@(\d+)@@", lambda m: f"<{next(iter(tokens[int(m.group(1))].values()))}>", node)
        return node

    return restore(asl)


def state_machine_statements(s: Synthesized) -> list[dict[str, Any]]:
    statements = []
    for key, policy in s.resources("AWS::IAM::Policy").items():
        if key.startswith("BackfillStateMachine"):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def function_statements(s: Synthesized) -> list[dict[str, Any]]:
    (policy,) = [p for k, p in s.resources("AWS::IAM::Policy").items() if k.startswith("BackfillFunctionRole")]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def actions_of(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def backfill_function(s: Synthesized) -> dict[str, Any]:
    (function,) = [
        f["Properties"]
        for f in s.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "handler.backfill_handler"
    ]
    return function


# -- shape ---------------------------------------------------------------------------------------------------


def test_a_prefix_listing_of_the_image_bucket_feeds_a_distributed_map(with_model: Synthesized) -> None:
    states = definition(with_model)["States"]
    listing = states["ListPhotos"]
    assert listing["Type"] == "Map"
    # Distributed mode with STANDARD children: a batch may outlive Express's 5-minute limit
    assert listing["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = listing["ItemReader"]
    assert reader["Resource"] == "arn:<AWS::Partition>:states:::s3:listObjectsV2"
    bucket = logical_id(with_model, "AWS::S3::Bucket", "StorageImageBucket")
    assert reader["Parameters"] == {"Bucket": {"token": {"Ref": bucket}}, "Prefix.$": "$.prefix"}
    assert states["CheckPrefix"]["Choices"][-1] == {
        "Variable": "$.prefix",
        "StringMatches": "*",
        "Next": "ListPhotos",
    }


def test_batches_carry_the_bucket_and_reclassify_and_concurrency_is_bounded_by_config(
    with_model: Synthesized,
) -> None:
    states = definition(with_model)["States"]
    listing = states["ListPhotos"]
    bucket = logical_id(with_model, "AWS::S3::Bucket", "StorageImageBucket")
    # docs/interfaces.md: {"Items": [...], "BatchInput": {"bucket": ..., "reclassify": bool}}
    assert listing["ItemBatcher"] == {
        "MaxItemsPerBatch": 25,
        "BatchInput": {"bucket": {"token": {"Ref": bucket}}, "reclassify.$": "$.reclassify"},
    }
    # In-flight photos = concurrent batches (the handler labels a batch's items one at a time): the default
    # comes from config and a start may only lower it.
    assert listing["MaxConcurrencyPath"] == "$.max_concurrency"
    assert states["DefaultMaxConcurrency"]["Result"] == 8
    bound = states["CheckInput"]["Choices"][2]
    assert bound == {
        "Or": [
            {"Variable": "$.max_concurrency", "NumericLessThan": 1},
            {"Variable": "$.max_concurrency", "NumericGreaterThan": 8},
        ],
        "Next": "InvalidInput",
    }
    assert states["DefaultReclassify"]["Result"] is False


def test_input_checks_test_types_before_comparing(with_model: Synthesized) -> None:
    # A comparison on a missing or mistyped field is a runtime error, not the InvalidInput failure users read.
    states = definition(with_model)["States"]
    checks = states["CheckInput"]["Choices"]
    assert checks[0] == {"Not": {"Variable": "$.reclassify", "IsBoolean": True}, "Next": "InvalidInput"}
    assert checks[1] == {"Not": {"Variable": "$.max_concurrency", "IsNumeric": True}, "Next": "InvalidInput"}
    prefix = states["CheckPrefix"]["Choices"]
    assert [next(iter(c["Not"])) if "Not" in c else None for c in prefix[:2]] == ["Variable", "Variable"]
    assert prefix[0]["Not"]["IsPresent"] and prefix[1]["Not"]["IsString"]
    assert states["CheckPrefix"]["Default"] == "InvalidInput"
    assert states["InvalidInput"]["Type"] == "Fail"
    # Without an inventory bucket a manifest start fails with its own explanation, straight from CheckInput
    # (no rule-less Choice: the States Language refuses one, tests/stacks/test_state_machines.py)
    manifest_rule = next(c for c in checks if c.get("Variable") == "$.manifest_key" and c.get("IsPresent"))
    assert manifest_rule["Next"] == "ManifestInputDisabled"
    assert "CheckManifest" not in states
    assert "inventory_bucket" in states["ManifestInputDisabled"]["Cause"]


def test_each_batch_runs_the_labellers_backfill_handler_and_transient_errors_are_retried_with_backoff(
    with_model: Synthesized,
) -> None:
    processor = definition(with_model)["States"]["ListPhotos"]["ItemProcessor"]
    (task,) = processor["States"].values()
    function = logical_id(with_model, "AWS::Lambda::Function", "BackfillFunction")
    assert task["Resource"]["token"]["Fn::GetAtt"] == [function, "Arn"]
    transient = next(r for r in task["Retry"] if "TransientBatchError" in r["ErrorEquals"])
    assert transient == {
        "ErrorEquals": ["TransientBatchError", "Lambda.TooManyRequestsException"],
        "IntervalSeconds": 30,
        "MaxAttempts": 5,
        "BackoffRate": 2,
        "MaxDelaySeconds": 600,
        "JitterStrategy": "FULL",
    }
    # Refused input (ValueError) is not retried: it cannot succeed
    assert all("States.ALL" not in r["ErrorEquals"] for r in task["Retry"])


def test_the_backfill_function_is_the_same_code_as_the_upload_labeller(with_model: Synthesized) -> None:
    functions = {
        f["Properties"]["Handler"]: f["Properties"] for f in with_model.resources("AWS::Lambda::Function").values()
    }
    upload, batch = functions["handler.lambda_handler"], functions["handler.backfill_handler"]
    assert batch["Code"] == upload["Code"]
    assert batch["Runtime"] == upload["Runtime"] == "python3.12"
    assert batch["Timeout"] == 900
    assert batch["TracingConfig"] == {"Mode": "Active"}
    env, upload_env = batch["Environment"]["Variables"], upload["Environment"]["Variables"]
    for name in ("TABLE_NAME", "ENDPOINT_NAME", "MODEL_ID", "CONFIDENCE_THRESHOLD", "TAXONOMY_FILE"):
        assert env[name] == upload_env[name], name
    assert env["MODEL_ID"] == MODEL_URI  # skips photos this model already labelled; reclassify compares it
    assert env["UPLOAD_PREFIX"] == ""  # source_prefix: the whole bucket by default
    assert env["POWERTOOLS_SERVICE_NAME"] == BACKFILL_SERVICE_NAME
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == upload_env["POWERTOOLS_METRICS_NAMESPACE"]


def test_failures_are_tolerated_up_to_config_and_written_to_the_results_bucket(with_model: Synthesized) -> None:
    states = definition(with_model)["States"]
    listing = states["ListPhotos"]
    assert listing["ToleratedFailurePercentage"] == 5
    results = logical_id(with_model, "AWS::S3::Bucket", "BackfillResultsBucket")
    assert listing["ResultWriter"]["Parameters"] == {
        "Bucket": {"token": {"Ref": results}},
        "Prefix": "backfill-results",
    }
    bucket = with_model.resources("AWS::S3::Bucket")[results]["Properties"]
    assert (
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
            "SSEAlgorithm"
        ]
        == "aws:kms"
    )
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90
    # The map's output is kept and a final Summary describes the map run
    assert listing["ResultPath"] == "$.map" and listing["Next"] == "Summary"
    summary = states["Summary"]
    assert summary["Resource"] == "arn:<AWS::Partition>:states:::aws-sdk:sfn:describeMapRun"
    assert summary["Parameters"] == {"MapRunArn.$": "$.map.MapRunArn"}
    assert summary["ResultPath"] == "$.summary"


def test_state_machine_is_logged_traced_and_kms_encrypted(with_model: Synthesized) -> None:
    machine = backfill_machine(with_model)
    key = logical_id(with_model, "AWS::KMS::Key", "StorageKey")
    assert machine["StateMachineName"] == "photo-labeler-backfill"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert machine["EncryptionConfiguration"]["KmsKeyId"] == {"Fn::GetAtt": [key, "Arn"]}


# -- IAM scope -----------------------------------------------------------------------------------------------


def test_state_machine_may_list_photos_invoke_only_its_function_and_write_only_results(
    with_model: Synthesized,
) -> None:
    statements = state_machine_statements(with_model)
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        for action in actions_of(statement):
            by_action.setdefault(action, []).append(statement["Resource"])
    image = logical_id(with_model, "AWS::S3::Bucket", "StorageImageBucket")
    results = logical_id(with_model, "AWS::S3::Bucket", "BackfillResultsBucket")
    function = logical_id(with_model, "AWS::Lambda::Function", "BackfillFunction")
    # Lists photos, never reads them (the function does)
    assert by_action["s3:ListBucket"] == [{"Fn::GetAtt": [image, "Arn"]}]
    assert all(json.dumps(r).count(results) == 1 for r in by_action["s3:GetObject"])
    assert all(json.dumps(r).count(results) == 1 for r in by_action["s3:PutObject"])
    (invoke,) = by_action["lambda:InvokeFunction"]
    assert json.dumps(invoke).count(function) == 2 and "*" not in json.dumps(invoke).replace(":*", "")
    (describe,) = by_action["states:DescribeMapRun"]
    assert describe["Fn::Join"][1][-1] == ":mapRun:photo-labeler-backfill/*"
    # Child workflows: start executions of itself only
    machine = logical_id(with_model, "AWS::StepFunctions::StateMachine", "BackfillStateMachine")
    assert by_action["states:StartExecution"] == [{"Ref": machine}]
    assert not any(a.startswith(("dynamodb:", "sagemaker:")) for a in by_action)


def test_backfill_function_reads_photos_writes_labels_and_invokes_only_this_endpoint(
    with_model: Synthesized,
) -> None:
    statements = function_statements(with_model)
    actions = set().union(*(actions_of(s) for s in statements))
    assert {"dynamodb:Scan", "dynamodb:DeleteItem", "s3:PutObject", "s3:DeleteObject"}.isdisjoint(actions)
    (invoke,) = [s for s in statements if "sagemaker:InvokeEndpoint" in actions_of(s)]
    endpoint = logical_id(with_model, "AWS::SageMaker::Endpoint", "InferenceEndpoint")
    assert invoke["Resource"] == {"Ref": endpoint}
    (write,) = [s for s in statements if "dynamodb:PutItem" in actions_of(s)]
    table = logical_id(with_model, "AWS::DynamoDB::Table", "StorageLabelsTable")
    assert write["Resource"] == {"Fn::GetAtt": [table, "Arn"]}


def test_a_source_prefix_scopes_listing_reading_and_the_accepted_input(scoped: Synthesized) -> None:
    # Given backfill.source_prefix = archive/
    states = definition(scoped)["States"]
    # Then a start outside it is refused before anything is listed
    assert {"Variable": "$.prefix", "StringMatches": "archive/*", "Next": "ListPhotos"} in states["CheckPrefix"][
        "Choices"
    ]
    # And both roles list only under it, and the function reads only photos under it (besides the served model's
    # profile record, one key of the model's bucket: tests/stacks/labelling/test_labeller_function.py)
    for statement in state_machine_statements(scoped) + function_statements(scoped):
        if "s3:ListBucket" in actions_of(statement) and "model_profile.json" not in json.dumps(statement):
            assert statement["Condition"] == {"StringLike": {"s3:prefix": ["archive/*"]}}
    (read,) = [s for s in function_statements(scoped) if "s3:GetObject" in actions_of(s)]
    resources = read["Resource"] if isinstance(read["Resource"], list) else [read["Resource"]]
    (photos,) = [r for r in resources if "model_profile.json" not in json.dumps(r)]
    assert photos["Fn::Join"][1][-1] == "/archive/*"
    assert backfill_function(scoped)["Environment"]["Variables"]["UPLOAD_PREFIX"] == "archive/"
    assert states["ListPhotos"]["ItemBatcher"]["MaxItemsPerBatch"] == 40
    assert states["DefaultMaxConcurrency"]["Result"] == 4


def test_an_inventory_manifest_is_read_as_manifest_from_the_configured_bucket_and_prefix(
    scoped: Synthesized,
) -> None:
    states = definition(scoped)["States"]
    manifest = states["CheckManifest"]["Choices"]
    assert manifest[0] == {"Not": {"Variable": "$.manifest_key", "IsString": True}, "Next": "InvalidInput"}
    assert manifest[1] == {
        "Variable": "$.manifest_key",
        "StringMatches": "reports/*manifest.json",
        "Next": "ReadInventory",
    }
    inventory = states["ReadInventory"]
    assert inventory["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert inventory["ItemReader"]["ReaderConfig"] == {"InputType": "MANIFEST"}
    assert inventory["ItemReader"]["Parameters"] == {
        "Bucket": "photo-labeler-inventory",
        "Key.$": "$.manifest_key",
    }
    # Inventory CSV keys are URL-encoded: the batch says so
    assert inventory["ItemBatcher"]["BatchInput"]["key_encoding"] == "url"
    reads = [s for s in state_machine_statements(scoped) if actions_of(s) == {"s3:GetObject"}]
    assert [
        json.dumps(s["Resource"]) for s in reads if "photo-labeler-inventory" in json.dumps(s["Resource"])
    ] == [
        json.dumps(
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::photo-labeler-inventory/reports/*"]]}
        )
    ]
    outputs = scoped.json["Outputs"]
    assert outputs["BackfillInventoryBucket"]["Value"] == "photo-labeler-inventory"


def test_without_a_model_there_is_no_backfill(no_model: Synthesized) -> None:
    assert not [k for k in no_model.resources("AWS::StepFunctions::StateMachine") if "Backfill" in k]
    assert "BackfillStateMachineArn" not in no_model.json["Outputs"]


def test_with_a_model_the_cli_finds_the_state_machine_in_the_outputs(with_model: Synthesized) -> None:
    machine = logical_id(with_model, "AWS::StepFunctions::StateMachine", "BackfillStateMachine")
    assert with_model.json["Outputs"]["BackfillStateMachineArn"]["Value"] == {"Ref": machine}


# -- config --------------------------------------------------------------------------------------------------


def test_defaults_apply_when_the_section_is_absent() -> None:
    assert AppConfig.from_context({}).backfill == BackfillConfig()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("source_prefix", "archive", "ending in '/'"),
        ("source_prefix", "arch*/", "without '*'"),
        ("hotel_id_pattern", "^[^/]+/", "named group"),
        ("items_per_batch", 0, "1..1000"),
        ("max_concurrency", 20_000, "1..10000"),
        ("tolerated_failure_percentage", 101, "0..100"),
        ("function_timeout_seconds", 120, "200..900"),
        ("inventory_bucket", "s3://inventory", "bucket name"),
        ("retry_attempts", 11, "0..10"),
    ],
)
def test_invalid_values_fail_naming_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        AppConfig.from_context({"backfill": {key: value}})
    assert raised.value.key == f"photo_labeler.backfill.{key}"


def test_the_scoped_variant_passes_cdk_nag(scoped: Synthesized) -> None:
    # The default variants are gated in test_security_gates.py; this one adds the inventory reader's grants.
    assert [v.rule_name for v in AwsSolutionsChecks().validate_scope(scoped.stack).violations] == []


def _labeller_inputs() -> Any:
    # The bundle puts lambda/*.py at the task root; load the module the same way without touching sys.path.
    spec = importlib.util.spec_from_file_location("labeller_inputs_contract", LAMBDA_DIR / "labeller_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("map_state", "item"),
    [
        # What the listObjectsV2 reader emits per object
        ("ListPhotos", {"Etag": '"9b2cf535f27731c974343645a3985328"', "Key": "archive/h42/pool.jpg", "Size": 1}),
        # What the S3 Inventory (CSV) reader emits per row
        ("ReadInventory", {"Bucket": "photo-labeler-images", "Key": "archive/h42/pool.jpg", "Size": "1"}),
    ],
)
def test_the_batches_the_map_sends_parse_in_the_backfill_handler(
    scoped: Synthesized, map_state: str, item: dict[str, Any]
) -> None:
    # Given the BatchInput exactly as the state machine renders it, with the execution input applied
    batch_input = definition(scoped)["States"][map_state]["ItemBatcher"]["BatchInput"]
    rendered = {"bucket": "photo-labeler-images", "reclassify": True}
    rendered.update({k: v for k, v in batch_input.items() if k not in ("bucket", "reclassify.$")})
    # When the handler's parser reads a batch of reader items
    batch = _labeller_inputs().BackfillBatch.parse({"Items": [item], "BatchInput": rendered})
    # Then it yields the photo in the image bucket, with the re-classification flag
    assert batch.invalid == ()
    assert [(r.bucket, r.key) for r in batch.refs] == [("photo-labeler-images", "archive/h42/pool.jpg")]
    assert batch.reclassify is True
