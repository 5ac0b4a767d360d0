"""tools.redrive: dead letters back to their source queue with SQS message move tasks.

moto 5.2.5 does not implement StartMessageMoveTask, ListMessageMoveTasks or CancelMessageMoveTask, so the move
tests run real botocore clients behind a Stubber: every request is checked against botocore's SQS service model
(parameter names, types, the 1-500 rate is the model's documented limit) and every canned response has the real
response shape. What moto does implement (queues, redrive policies, message counts, ListDeadLetterSourceQueues,
CloudFormation outputs) runs on moto.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tools import redrive
from tools.redrive import Clients

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "photo-labeler"
DLQ_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/photo-labeler-UploadPathDeadLetterQueue"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:photo-labeler-UploadPathDeadLetterQueue"
SOURCE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/photo-labeler-UploadPathQueue"
ASYNC_DLQ_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/photo-labeler-AsyncInferenceDeadLetterQueue"
ASYNC_DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:photo-labeler-AsyncInferenceDeadLetterQueue"
ASYNC_SOURCE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/photo-labeler-AsyncInferenceQueue"
HANDLE = "eyJ0YXNrSWQiOiJ0YXNrLTEifQ=="  # an opaque string; its shape is SQS's, not checked further
STARTED = 1_764_100_000_000  # epoch milliseconds


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[Clients, Stubber, Stubber]]:
    sqs = boto3.client("sqs", region_name=REGION)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(sqs) as sqs_stub, Stubber(cloudformation) as cfn_stub:
        yield Clients(sqs=sqs, cloudformation=cloudformation), sqs_stub, cfn_stub
        sqs_stub.assert_no_pending_responses()
        cfn_stub.assert_no_pending_responses()


def _stack(cfn: Stubber, outputs: dict[str, str]) -> None:
    cfn.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": STACK,
                    "CreationTime": datetime(2026, 11, 1, tzinfo=UTC),
                    "StackStatus": "UPDATE_COMPLETE",
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
                }
            ]
        },
        {"StackName": STACK},
    )


def _queue(sqs: Stubber, url: str, arn: str, *, waiting: int, sources: list[str]) -> None:
    sqs.add_response(
        "get_queue_attributes",
        {
            "Attributes": {
                "QueueArn": arn,
                "ApproximateNumberOfMessages": str(waiting),
                "ApproximateNumberOfMessagesNotVisible": "0",
            }
        },
        {
            "QueueUrl": url,
            "AttributeNames": ["QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        },
    )
    sqs.add_response("list_dead_letter_source_queues", {"queueUrls": sources}, {"QueueUrl": url})


def _task(status: str, moved: int, total: int | None = None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Status": status,
        "SourceArn": DLQ_ARN,
        "ApproximateNumberOfMessagesMoved": moved,
        "StartedTimestamp": STARTED,
        **extra,
    }
    if total is not None:
        task["ApproximateNumberOfMessagesToMove"] = total
    if status == "RUNNING":
        task["TaskHandle"] = HANDLE  # SQS returns the handle for running tasks only
    return task


def _tasks(sqs: Stubber, *tasks: dict[str, Any], arn: str = DLQ_ARN, count: int = 1) -> None:
    sqs.add_response("list_message_move_tasks", {"Results": list(tasks)}, {"SourceArn": arn, "MaxResults": count})


def _run(argv: list[str], clients: Clients) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = redrive.main(argv, clients=clients, stdout=out, stderr=err, sleep=lambda _: None)
    return code, out.getvalue(), err.getvalue()


UPLOAD_ONLY = {"DeadLetterQueueUrl": DLQ_URL}


def test_start_moves_the_dead_letters_back_to_their_source_and_shows_progress_until_done(
    stubbed: tuple[Clients, Stubber, Stubber],
) -> None:
    clients, sqs, cfn = stubbed
    # Given the upload DLQ holding 12 messages dead-lettered from the upload queue
    _stack(cfn, UPLOAD_ONLY)
    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=12, sources=[SOURCE_URL])
    _tasks(sqs)  # no task has run on it yet
    # Then a move task with no destination (each message returns to the queue it came from), at a fixed rate
    sqs.add_response(
        "start_message_move_task",
        {"TaskHandle": HANDLE},
        {"SourceArn": DLQ_ARN, "MaxNumberOfMessagesPerSecond": 50},
    )
    _tasks(sqs, _task("RUNNING", 0))
    _tasks(sqs, _task("RUNNING", 6, 12, MaxNumberOfMessagesPerSecond=50))
    _tasks(sqs, _task("COMPLETED", 12, 12, MaxNumberOfMessagesPerSecond=50))

    # When the operator redrives it
    code, out, err = _run(["start", "--max-per-second", "50"], clients)

    # Then it says what moves where, one progress line per poll, and exits 0 once the task completed
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "upload DLQ photo-labeler-UploadPathDeadLetterQueue: moving 12 messages back to "
        f"photo-labeler-UploadPathQueue (task {HANDLE})",
        "upload DLQ RUNNING: 0 moved (total not counted yet)",
        "upload DLQ RUNNING: 6 of 12 moved (50 %), at most 50/s",
        "upload DLQ COMPLETED: 12 of 12 moved (100 %), at most 50/s",
    ]


def test_both_dead_letter_queues_of_an_async_stack_are_checked_before_either_moves(
    stubbed: tuple[Clients, Stubber, Stubber],
) -> None:
    clients, sqs, cfn = stubbed
    # Given an async-mode stack whose notification DLQ already has a move task running
    _stack(cfn, {**UPLOAD_ONLY, "AsyncDeadLetterQueueUrl": ASYNC_DLQ_URL})
    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=3, sources=[SOURCE_URL])
    _queue(sqs, ASYNC_DLQ_URL, ASYNC_DLQ_ARN, waiting=5, sources=[ASYNC_SOURCE_URL])
    _tasks(sqs)
    _tasks(sqs, {**_task("RUNNING", 1, 5), "SourceArn": ASYNC_DLQ_ARN}, arn=ASYNC_DLQ_ARN)

    # When both are redriven
    code, out, err = _run(["start", "--queue", "all"], clients)

    # Then nothing starts (no StartMessageMoveTask was stubbed), and the one-line reason says what to do
    assert (code, out) == (2, "")
    assert err == (
        "error: a move task is already running on photo-labeler-AsyncInferenceDeadLetterQueue (SQS allows one per "
        "queue): watch it with `python -m tools.redrive status`, or stop it with `... cancel`\n"
    )


def test_a_failed_move_task_ends_the_watch_with_its_reason_and_exit_1(
    stubbed: tuple[Clients, Stubber, Stubber],
) -> None:
    clients, sqs, _ = stubbed
    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=2, sources=[SOURCE_URL])
    _tasks(sqs, _task("COMPLETED", 7, 7))  # an earlier, finished move does not block a new one
    sqs.add_response("start_message_move_task", {"TaskHandle": HANDLE}, {"SourceArn": DLQ_ARN})
    _tasks(sqs, _task("FAILED", 1, 2, FailureReason="AccessDenied: kms:GenerateDataKey"))

    code, out, _ = _run(["--queue-url", DLQ_URL, "start", "--queue", "upload"], clients)

    assert code == 1
    assert (
        out.splitlines()[-1]
        == "upload DLQ FAILED: 1 of 2 moved (50 %); failure: AccessDenied: kms:GenerateDataKey"
    )


def test_status_lists_waiting_messages_sources_and_the_latest_tasks(
    stubbed: tuple[Clients, Stubber, Stubber],
) -> None:
    clients, sqs, cfn = stubbed
    _stack(cfn, UPLOAD_ONLY)
    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=4, sources=[SOURCE_URL])
    _tasks(sqs, _task("CANCELLED", 3, 9), _task("COMPLETED", 9, 9), count=10)

    code, out, _ = _run(["status"], clients)

    assert code == 0
    assert out.splitlines() == [
        "upload DLQ photo-labeler-UploadPathDeadLetterQueue: 4 waiting, 0 in flight; sources: "
        "photo-labeler-UploadPathQueue",
        "  CANCELLED: 3 of 9 moved (33 %)",
        "  COMPLETED: 9 of 9 moved (100 %)",
    ]


def test_cancel_stops_the_running_task_and_refuses_when_none_runs(
    stubbed: tuple[Clients, Stubber, Stubber],
) -> None:
    clients, sqs, _ = stubbed
    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=6, sources=[SOURCE_URL])
    _tasks(sqs, _task("RUNNING", 4, 10))
    sqs.add_response("cancel_message_move_task", {"ApproximateNumberOfMessagesMoved": 4}, {"TaskHandle": HANDLE})

    assert _run(["--queue-url", DLQ_URL, "cancel"], clients)[:2] == (
        0,
        "upload DLQ: cancelling; 4 messages had been moved (they stay moved)\n",
    )

    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=6, sources=[SOURCE_URL])
    _tasks(sqs, _task("CANCELLED", 4, 10))
    code, _, err = _run(["--queue-url", DLQ_URL, "cancel"], clients)
    assert (code, err) == (2, "error: no move task is running on photo-labeler-UploadPathDeadLetterQueue\n")


def test_an_aws_error_is_one_line(stubbed: tuple[Clients, Stubber, Stubber]) -> None:
    clients, sqs, _ = stubbed
    _queue(sqs, DLQ_URL, DLQ_ARN, waiting=2, sources=[SOURCE_URL])
    _tasks(sqs)
    sqs.add_client_error(
        "start_message_move_task",
        service_error_code="AccessDenied",
        service_message="not authorized to perform: sqs:StartMessageMoveTask",
        http_status_code=403,
    )

    code, _, err = _run(["--queue-url", DLQ_URL, "start"], clients)

    assert (code, err) == (1, "error: AWS AccessDenied: not authorized to perform: sqs:StartMessageMoveTask\n")


# -- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start", "--max-per-second", "501"], "must be 1..500 (SQS's limit), got 501"),
        (["start", "--max-per-second", "0"], "must be 1..500 (SQS's limit), got 0"),
        (["start", "--max-per-second", "fast"], "expected a whole number of messages per second, got 'fast'"),
        (["start", "--queue", "dlq"], "invalid choice: 'dlq'"),
    ],
)
def test_bad_arguments_are_refused_before_any_aws_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        redrive.main(argv, clients=Clients(sqs=None, cloudformation=None))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_async_on_a_stack_without_async_mode_and_a_malformed_url_are_refused(
    stubbed: tuple[Clients, Stubber, Stubber],
) -> None:
    clients, _, cfn = stubbed
    _stack(cfn, UPLOAD_ONLY)
    code, _, err = _run(["start", "--queue", "async"], clients)
    assert (code, err) == (
        2,
        "error: stack 'photo-labeler' has no AsyncDeadLetterQueueUrl output: its endpoint is not in async mode\n",
    )

    code, _, err = _run(["--queue-url", "photo-labeler-dlq", "start"], clients)
    assert (code, err) == (2, "error: --queue-url must be a queue URL (https://sqs...), got 'photo-labeler-dlq'\n")


# -- on moto: the stack's queues, their redrive policy and their counts ------------------------------------------


TEMPLATE = {
    "Resources": {
        "DeadLetterQueue": {"Type": "AWS::SQS::Queue"},
        "Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                    "maxReceiveCount": 3,
                }
            },
        },
    },
    "Outputs": {
        "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
        "UploadQueueUrl": {"Value": {"Ref": "Queue"}},
    },
}


@pytest.fixture
def moto_stack(aws_env: None) -> Iterator[Clients]:
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE))
        yield Clients(sqs=boto3.client("sqs", region_name=REGION), cloudformation=cloudformation)


def test_an_empty_dead_letter_queue_is_reported_and_nothing_starts(moto_stack: Clients) -> None:
    code, out, err = _run(["start"], moto_stack)

    assert (code, err) == (0, "")
    assert out.startswith("upload DLQ ") and out.endswith(": empty, nothing to redrive\n")


def test_a_queue_that_is_no_queues_dead_letter_queue_is_refused(moto_stack: Clients) -> None:
    # Given the upload queue itself (it has a DLQ, but nothing dead-letters into it) holding a message
    outputs = redrive.stack_outputs(moto_stack.cloudformation, STACK)
    moto_stack.sqs.send_message(QueueUrl=outputs["UploadQueueUrl"], MessageBody="{}")

    code, out, err = _run(["--queue-url", outputs["UploadQueueUrl"], "start"], moto_stack)

    assert (code, out) == (2, "")
    assert err.endswith("is not the dead-letter queue of any queue: SQS moves messages out of DLQs only\n")


def test_the_dlq_counts_and_its_source_come_from_sqs(moto_stack: Clients) -> None:
    outputs = redrive.stack_outputs(moto_stack.cloudformation, STACK)
    for body in ("a", "b", "c"):
        moto_stack.sqs.send_message(QueueUrl=outputs["DeadLetterQueueUrl"], MessageBody=body)
    queue = redrive.describe(moto_stack.sqs, "upload", outputs["DeadLetterQueueUrl"])

    assert (queue.waiting, queue.in_flight) == (3, 0)
    assert queue.sources == (outputs["UploadQueueUrl"],)
    assert queue.arn.startswith(f"arn:aws:sqs:{REGION}:")
