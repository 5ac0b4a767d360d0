"""The backfill CLI: what it sends to Step Functions, what it prints, and what it refuses.

Step Functions' map-run APIs are not in moto, so the clients are real botocore clients behind a Stubber: every
request is checked against the service model (parameter names, types) and every canned response has the real
response shape. The manifest check reads from moto's S3.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tools import backfill
from tools.backfill import BackfillError, Clients, build_input

REGION = "us-east-1"
STATE_MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:photo-labeler-backfill"
EXECUTION = f"arn:aws:states:{REGION}:123456789012:execution:photo-labeler-backfill:backfill-archive-1"
MAP_RUN = f"arn:aws:states:{REGION}:123456789012:mapRun:photo-labeler-backfill/backfill-archive-1:abc"
NOW = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
Stubbed = tuple[Clients, Stubber, Stubber]
OUTPUTS = {
    "BackfillStateMachineArn": STATE_MACHINE,
    "ImageBucketName": "photo-labeler-images",
    "BackfillInventoryBucket": "photo-labeler-inventory",
}


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[Clients, Stubber, Stubber]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(sfn) as sfn_stub, Stubber(cloudformation) as cfn_stub:
        yield Clients(sfn=sfn, cloudformation=cloudformation, s3=None), sfn_stub, cfn_stub
        sfn_stub.assert_no_pending_responses()
        cfn_stub.assert_no_pending_responses()


def stack_response(outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "photo-labeler",
                "CreationTime": NOW,
                "StackStatus": "UPDATE_COMPLETE",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def execution_response(status: str, output: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "executionArn": EXECUTION,
        "stateMachineArn": STATE_MACHINE,
        "status": status,
        "startDate": NOW,
        **extra,
    }
    if output is not None:
        response["output"] = json.dumps(output)
    return response


def map_run_response(total: int, succeeded: int, failed: int = 0, status: str = "RUNNING") -> dict[str, Any]:
    pending = total - succeeded - failed
    counts = {
        "pending": pending,
        "running": 0,
        "succeeded": succeeded,
        "failed": failed,
        "timedOut": 0,
        "aborted": 0,
        "total": total,
        "resultsWritten": succeeded + failed,
    }
    return {
        "mapRunArn": MAP_RUN,
        "executionArn": EXECUTION,
        "status": status,
        "startDate": NOW,
        "maxConcurrency": 16,
        "toleratedFailurePercentage": 5.0,
        "toleratedFailureCount": 0,
        "itemCounts": counts,
        "executionCounts": counts,
    }


def expect_progress(
    stub: Stubber, status: str, *, total: int, succeeded: int, failed: int = 0, **extra: Any
) -> None:
    stub.add_response("describe_execution", execution_response(status, **extra), {"executionArn": EXECUTION})
    stub.add_response(
        "list_map_runs",
        {
            "mapRuns": [
                {
                    "executionArn": EXECUTION,
                    "mapRunArn": MAP_RUN,
                    "stateMachineArn": STATE_MACHINE,
                    "startDate": NOW,
                }
            ]
        },
        {"executionArn": EXECUTION},
    )
    stub.add_response("describe_map_run", map_run_response(total, succeeded, failed), {"mapRunArn": MAP_RUN})


def cli(argv: list[str], clients: Clients) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = backfill.main(argv, clients=clients, stdout=out, stderr=err, now=lambda: NOW)
    return code, out.getvalue(), err.getvalue()


# -- start ---------------------------------------------------------------------------------------------------


def test_start_finds_the_state_machine_in_the_stack_outputs_and_sends_the_input(stubbed: Stubbed) -> None:
    clients, sfn, cfn = stubbed
    # Given the stack's outputs and no backfill running
    cfn.add_response("describe_stacks", stack_response(OUTPUTS), {"StackName": "photo-labeler"})
    sfn.add_response(
        "list_executions", {"executions": []}, {"stateMachineArn": STATE_MACHINE, "statusFilter": "RUNNING"}
    )
    sfn.add_response(
        "start_execution",
        {"executionArn": EXECUTION, "startDate": NOW},
        {
            "stateMachineArn": STATE_MACHINE,
            "name": "backfill-archive-2019-20261125T200000Z",
            "input": json.dumps({"reclassify": True, "max_concurrency": 8, "prefix": "archive/2019/"}),
        },
    )
    # When a backfill of a prefix is started with re-classification and a lower concurrency
    code, out, err = cli(["start", "--prefix", "archive/2019/", "--reclassify", "--max-concurrency", "8"], clients)
    # Then it starts exactly that execution and says how to follow it
    assert (code, err) == (0, "")
    assert f"started {EXECUTION}" in out
    assert f"python -m tools.backfill watch {EXECUTION}" in out


def test_start_refuses_while_another_backfill_is_running(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    # Given a running backfill
    other = EXECUTION.replace("backfill-archive-1", "backfill-other")
    sfn.add_response(
        "list_executions",
        {
            "executions": [
                {
                    "executionArn": other,
                    "stateMachineArn": STATE_MACHINE,
                    "name": "backfill-other",
                    "status": "RUNNING",
                    "startDate": NOW,
                }
            ]
        },
        {"stateMachineArn": STATE_MACHINE, "statusFilter": "RUNNING"},
    )
    # When another one is started
    code, out, err = cli(["--state-machine-arn", STATE_MACHINE, "start", "--prefix", "archive/"], clients)
    # Then nothing is started (no start_execution was stubbed) and the error names the running one
    assert code == 2 and out == ""
    assert other in err and "--allow-parallel" in err


def test_start_explains_a_stack_without_a_backfill(stubbed: Stubbed) -> None:
    clients, _sfn, cfn = stubbed
    # Given a stack deployed without a model (no backfill state machine)
    cfn.add_response("describe_stacks", stack_response({"ImageBucketName": "b"}), {"StackName": "photo-labeler"})
    # When a backfill is started
    code, _out, err = cli(["start", "--prefix", "archive/"], clients)
    # Then the error says why and what to do
    assert code == 2
    assert "BackfillStateMachineArn" in err and "endpoint.model_data_uri" in err


def test_aws_errors_are_reported_in_one_line_with_their_code(stubbed: Stubbed) -> None:
    clients, _sfn, cfn = stubbed
    cfn.add_client_error("describe_stacks", "ValidationError", "Stack with id photo-labeler does not exist")
    code, _out, err = cli(["start", "--prefix", "archive/"], clients)
    assert code == 1
    assert err == "error: AWS ValidationError: Stack with id photo-labeler does not exist\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": None, "manifest": None}, "exactly one of --prefix and --manifest"),
        ({"prefix": "a/", "manifest": "s3://b/manifest.json"}, "exactly one"),
        ({"prefix": "s3://bucket/archive/", "manifest": None}, "key prefix inside the image bucket"),
        ({"prefix": None, "manifest": "inventory/manifest.json"}, "expected s3://bucket/key"),
        ({"prefix": None, "manifest": "s3://inv/reports/data.csv.gz"}, "manifest.json"),
        ({"prefix": "a/", "manifest": None, "max_concurrency": 0}, "--max-concurrency must be >= 1"),
    ],
)
def test_bad_start_arguments_are_refused_with_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"reclassify": False, "max_concurrency": None, **kwargs}
    with pytest.raises(BackfillError, match=message):
        build_input(**arguments)


def test_execution_names_are_valid_and_readable() -> None:
    # Step Functions names: <= 80 characters of [A-Za-z0-9-_]
    long_prefix = "archive/" + "x" * 200 + "/"
    for payload in ({"prefix": "archive/2019 photos/"}, {"prefix": ""}, {"prefix": long_prefix}):
        name = backfill.execution_name(payload, NOW)
        assert len(name) <= 80
        assert all(ch.isalnum() or ch in "-_" for ch in name), name
    assert backfill.execution_name({"prefix": "archive/2019 photos/"}, NOW) == (
        "backfill-archive-2019-photos-20261125T200000Z"
    )


# -- manifests (moto S3) -------------------------------------------------------------------------------------


@pytest.fixture
def inventory(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="photo-labeler-inventory")
        yield s3


def put_manifest(s3: Any, key: str, **fields: Any) -> None:
    manifest = {
        "sourceBucket": "photo-labeler-images",
        "destinationBucket": "arn:aws:s3:::photo-labeler-inventory",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
        "files": [{"key": "reports/data/a.csv.gz", "size": 10, "MD5checksum": "x"}],
        **fields,
    }
    s3.put_object(Bucket="photo-labeler-inventory", Key=key, Body=json.dumps(manifest).encode())


def test_start_from_a_manifest_checks_it_and_sends_only_its_key(stubbed: Stubbed, inventory: Any) -> None:
    clients, sfn, cfn = stubbed
    key = "reports/photo-labeler-images/daily/2026-11-24T01-00Z/manifest.json"
    put_manifest(inventory, key)
    cfn.add_response("describe_stacks", stack_response(OUTPUTS), {"StackName": "photo-labeler"})
    sfn.add_response(
        "list_executions", {"executions": []}, {"stateMachineArn": STATE_MACHINE, "statusFilter": "RUNNING"}
    )
    sfn.add_response(
        "start_execution",
        {"executionArn": EXECUTION, "startDate": NOW},
        {
            "stateMachineArn": STATE_MACHINE,
            "name": ANY,
            "input": json.dumps({"reclassify": False, "manifest_key": key}),
        },
    )
    clients.s3 = inventory
    code, out, err = cli(["start", "--manifest", f"s3://photo-labeler-inventory/{key}"], clients)
    assert (code, err) == (0, "")
    assert "inventory of s3://photo-labeler-images: 1 data file(s)" in out


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fileFormat": "Parquet"}, "reads only CSV inventories"),
        ({"sourceBucket": "someone-elses-bucket"}, "not the image bucket"),
    ],
)
def test_a_manifest_the_map_cannot_use_is_refused_before_starting(
    stubbed: Stubbed, inventory: Any, fields: dict[str, Any], message: str
) -> None:
    clients, _sfn, cfn = stubbed
    key = "reports/x/manifest.json"
    put_manifest(inventory, key, **fields)
    cfn.add_response("describe_stacks", stack_response(OUTPUTS), {"StackName": "photo-labeler"})
    clients.s3 = inventory
    code, _out, err = cli(["start", "--manifest", f"s3://photo-labeler-inventory/{key}"], clients)
    assert code == 2 and message in err


def test_a_manifest_in_another_bucket_than_the_deployed_one_is_refused(stubbed: Stubbed) -> None:
    clients, _sfn, cfn = stubbed
    cfn.add_response("describe_stacks", stack_response(OUTPUTS), {"StackName": "photo-labeler"})
    code, _out, err = cli(["start", "--manifest", "s3://elsewhere/reports/manifest.json"], clients)
    assert code == 2 and "'photo-labeler-inventory'" in err


# -- progress ------------------------------------------------------------------------------------------------


def test_status_prints_processed_failed_and_remaining_from_the_map_run_counters(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    # Given a running map run with 40,000 items read, 12,000 done and 50 in failed batches
    expect_progress(sfn, "RUNNING", total=40_000, succeeded=12_000, failed=50)
    # When its status is asked
    code, out, _err = cli(["status", EXECUTION], clients)
    # Then one line shows the counters (no rate yet: one sample)
    assert code == 0
    assert "12,000 processed · 50 failed · 27,950 remaining" in out
    assert "30.1%" in out and "RUNNING" in out


def test_status_before_the_map_starts_says_so(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    sfn.add_response("describe_execution", execution_response("RUNNING"), {"executionArn": EXECUTION})
    sfn.add_response("list_map_runs", {"mapRuns": []}, {"executionArn": EXECUTION})
    code, out, _err = cli(["status", EXECUTION], clients)
    assert code == 0 and "waiting for the map run to start" in out


def test_status_of_an_ended_backfill_prints_the_summary_and_how_to_retry_failures(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    output = {
        "prefix": "archive/",
        "map": {
            "MapRunArn": MAP_RUN,
            "ResultWriterDetails": {"Bucket": "results", "Key": "backfill-results/x/manifest.json"},
        },
    }
    expect_progress(sfn, "SUCCEEDED", total=1_000, succeeded=975, failed=25, output=output)
    code, out, _err = cli(["status", EXECUTION], clients)
    assert code == 0
    assert "items: 1,000 total, 975 processed, 25 failed" in out
    assert "results: s3://results/backfill-results/x/manifest.json" in out
    # A succeeded execution cannot be redriven: the way to retry is a new start that skips finished photos
    assert "start the same prefix/manifest again" in out and "redrive" not in out


def test_a_failed_backfill_shows_its_error_and_exits_non_zero(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    sfn.add_response(
        "describe_execution",
        execution_response("FAILED", error="InvalidInput", cause="Start a backfill with ..."),
        {"executionArn": EXECUTION},
    )
    sfn.add_response("list_map_runs", {"mapRuns": []}, {"executionArn": EXECUTION})
    code, out, _err = cli(["status", EXECUTION], clients)
    assert code == 1
    assert "error: InvalidInput: Start a backfill with ..." in out
    assert f"python -m tools.backfill redrive {EXECUTION}" in out


def test_watch_polls_until_the_end_with_rate_and_eta(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    # Given three polls 10 s apart: 0 → 1,000 → 2,000 of 2,000 items
    expect_progress(sfn, "RUNNING", total=2_000, succeeded=0)
    expect_progress(sfn, "RUNNING", total=2_000, succeeded=1_000)
    expect_progress(sfn, "SUCCEEDED", total=2_000, succeeded=2_000)
    times = iter([0.0, 10.0, 20.0])
    sleeps: list[float] = []
    out = io.StringIO()
    # When it is watched on a non-terminal output
    progress = backfill.watch(
        clients.sfn, EXECUTION, out=out, interval=10.0, clock=lambda: next(times), sleep=sleeps.append, live=False
    )
    # Then it printed one line per poll, the rate (100/s) and an ETA while running, and stopped at the end
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and sleeps == [10.0, 10.0]
    assert "100.0/s · ETA 10s" in lines[1]
    assert "ETA" not in lines[2] and "SUCCEEDED" in lines[2]
    assert progress.done and progress.remaining == 0


def test_watch_on_a_terminal_rewrites_one_line(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    expect_progress(sfn, "SUCCEEDED", total=10, succeeded=10)
    out = io.StringIO()
    backfill.watch(clients.sfn, EXECUTION, out=out, clock=lambda: 0.0, sleep=lambda _s: None, live=True)
    assert out.getvalue().startswith("\r\033[K[") and out.getvalue().endswith("\n")


# -- stop / redrive ------------------------------------------------------------------------------------------


def test_stop_and_redrive_call_step_functions_for_that_execution(stubbed: Stubbed) -> None:
    clients, sfn, _cfn = stubbed
    sfn.add_response("stop_execution", {"stopDate": NOW}, {"executionArn": EXECUTION, "cause": "maintenance"})
    sfn.add_response("redrive_execution", {"redriveDate": NOW}, {"executionArn": EXECUTION})
    assert cli(["stop", EXECUTION, "--cause", "maintenance"], clients)[0] == 0
    code, out, _err = cli(["redrive", EXECUTION], clients)
    assert code == 0 and "redriving the failed batches" in out


def test_an_execution_argument_that_is_not_an_arn_is_refused(stubbed: Stubbed) -> None:
    clients, _sfn, _cfn = stubbed
    code, _out, err = cli(["stop", "backfill-archive-1"], clients)
    assert code == 2 and "execution ARN" in err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        backfill.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("start", "status", "watch", "stop", "redrive", "list"):
        assert command in text
