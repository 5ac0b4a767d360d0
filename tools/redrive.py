"""Move dead letters back to the queue they came from, once their cause is fixed (SQS message move tasks).

    python -m tools.redrive start  [--queue upload|async|all] [--max-per-second N] [--no-watch]
    python -m tools.redrive status [--queue upload|async|all]     # messages waiting, the latest move tasks
    python -m tools.redrive cancel [--queue upload|async|all]     # stop a running move (moved ones stay moved)

The dead-letter queues come from the stack's outputs (`--stack-name`, default `photo-labeler`): `--queue upload`
(the default) is `DeadLetterQueueUrl`, uploads that failed labelling on every delivery; `--queue async`, with
`endpoint.mode: async`, is `AsyncDeadLetterQueueUrl`, SageMaker's notifications the label writer could not record.
Redrive that one only when the writer failed (a Success notification in it): a notification of an inference that
failed `max_attempts` times goes straight back to the DLQ, and re-running the backfill over the photos' prefix
is what resubmits those. `--queue all` takes both; `--queue-url` names one queue instead. Credentials and region
are boto3's usual ones (`--region`, `--profile`, or the environment).

`start` moves every message waiting in each queue back to its source queue with SQS StartMessageMoveTask (no
DestinationArn: each message returns to the queue it was dead-lettered from), at SQS's own adaptive rate or at
`--max-per-second` (1-500, SQS's limit), then shows progress (ListMessageMoveTasks) every `--interval` seconds
until the task ends. Stopping the watch (Ctrl-C) leaves the task running; `status` shows it later. Redriven
uploads are labelled again by the upload function with its usual retries; one that fails again returns to the DLQ.

Refused with a one-line reason (exit 2): a queue that is no queue's dead-letter queue (SQS moves messages out of
DLQs only), a move task already running on the queue (SQS allows one), `--queue async` on a stack without async
mode, a rate outside 1-500. An empty queue is reported and skipped. An AWS error is printed as one line (exit 1).
The caller needs sqs:StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask, GetQueueAttributes and
ListDeadLetterSourceQueues on the DLQ, sqs:ReceiveMessage/DeleteMessage on it and SendMessage on the source queue
(SQS moves on the caller's behalf), and kms:Decrypt/GenerateDataKey on the queues' KMS key.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

DEFAULT_STACK_NAME = "photo-labeler"  # config name_prefix: the stack is named after it
QUEUE_OUTPUTS = {"upload": "DeadLetterQueueUrl", "async": "AsyncDeadLetterQueueUrl"}
MAX_PER_SECOND_LIMIT = 500  # SQS StartMessageMoveTask's MaxNumberOfMessagesPerSecond maximum
DEFAULT_INTERVAL_SECONDS = 10.0
ACTIVE = ("RUNNING", "CANCELLING")


class RedriveError(Exception):
    """A request the tool refuses; the message says why and what to do instead."""


@dataclass(frozen=True)
class DeadLetterQueue:
    label: str
    url: str
    arn: str
    waiting: int  # ApproximateNumberOfMessages
    in_flight: int  # ApproximateNumberOfMessagesNotVisible: being read by someone right now
    sources: tuple[str, ...]  # the queues whose redrive policy names this one


# -- lookups ---------------------------------------------------------------------------------------------------


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def queue_urls(outputs: dict[str, str], choice: str, stack_name: str) -> list[tuple[str, str]]:
    """(label, url) of the chosen dead-letter queues, from the stack's outputs."""
    if choice == "async" and QUEUE_OUTPUTS["async"] not in outputs:
        raise RedriveError(
            f"stack {stack_name!r} has no {QUEUE_OUTPUTS['async']} output: its endpoint is not in async mode"
        )
    if QUEUE_OUTPUTS["upload"] not in outputs:
        raise RedriveError(
            f"stack {stack_name!r} has no {QUEUE_OUTPUTS['upload']} output: not this project's stack"
        )
    labels = ("upload", "async") if choice == "all" else (choice,)
    return [(label, outputs[QUEUE_OUTPUTS[label]]) for label in labels if QUEUE_OUTPUTS[label] in outputs]


def describe(sqs: Any, label: str, url: str) -> DeadLetterQueue:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    sources = tuple(sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", []))
    return DeadLetterQueue(
        label=label,
        url=url,
        arn=attributes["QueueArn"],
        waiting=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        sources=sources,
    )


def latest_tasks(sqs: Any, queue: DeadLetterQueue, count: int = 1) -> list[dict[str, Any]]:
    return list(sqs.list_message_move_tasks(SourceArn=queue.arn, MaxResults=count).get("Results", []))


def _name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


# -- commands --------------------------------------------------------------------------------------------------


def can_start(sqs: Any, queue: DeadLetterQueue) -> bool:
    """True when `queue` has messages to move; RedriveError when a move cannot start on it."""
    if not queue.sources:
        raise RedriveError(
            f"{_name(queue.url)} is not the dead-letter queue of any queue: SQS moves messages out of DLQs only"
        )
    if queue.waiting == 0:
        return False
    running = [task for task in latest_tasks(sqs, queue) if task.get("Status") in ACTIVE]
    if running:
        raise RedriveError(
            f"a move task is already {running[0]['Status'].lower()} on {_name(queue.url)} (SQS allows one per "
            "queue): watch it with `python -m tools.redrive status`, or stop it with `... cancel`"
        )
    return True


def start(sqs: Any, queue: DeadLetterQueue, *, max_per_second: int | None) -> str:
    """Move `queue`'s messages back to the queues they came from; the task handle."""
    request: dict[str, Any] = {"SourceArn": queue.arn}
    if max_per_second is not None:
        request["MaxNumberOfMessagesPerSecond"] = max_per_second
    return str(sqs.start_message_move_task(**request)["TaskHandle"])


def render(task: dict[str, Any]) -> str:
    moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
    total = task.get("ApproximateNumberOfMessagesToMove")
    if total:
        share = f"{moved:,} of {int(total):,} moved ({100 * moved / int(total):.0f} %)"
    else:
        share = f"{moved:,} moved (total not counted yet)"
    rate = task.get("MaxNumberOfMessagesPerSecond")
    line = f"{task.get('Status', '?')}: {share}" + (f", at most {rate}/s" if rate else "")
    if task.get("FailureReason"):
        line += f"; failure: {task['FailureReason']}"
    return line


def watch(
    sqs: Any,
    queue: DeadLetterQueue,
    *,
    out: TextIO,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    live: bool | None = None,
) -> dict[str, Any]:
    """Print the latest move task of `queue` every `interval` s until it is no longer running; returns it."""
    live = out.isatty() if live is None else live
    while True:
        tasks = latest_tasks(sqs, queue)
        task = tasks[0] if tasks else {"Status": "RUNNING"}  # SQS lists a task shortly after starting it
        line = f"{queue.label} DLQ {render(task)}"
        out.write(("\r\033[K" + line) if live else (line + "\n"))
        out.flush()
        if task.get("Status") not in ACTIVE:
            if live:
                out.write("\n")
            return task
        sleep(interval)


def cancel(sqs: Any, queue: DeadLetterQueue) -> int | None:
    """Cancel the running move task of `queue`: the messages it had moved (they stay moved); None if none runs."""
    running = [task for task in latest_tasks(sqs, queue) if task.get("Status") == "RUNNING"]
    if not running:
        return None
    return int(
        sqs.cancel_message_move_task(TaskHandle=running[0]["TaskHandle"])["ApproximateNumberOfMessagesMoved"]
    )


# -- command line ----------------------------------------------------------------------------------------------


def _max_per_second(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of messages per second, got {value!r}"
        ) from None
    if not 1 <= number <= MAX_PER_SECOND_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_PER_SECOND_LIMIT} (SQS's limit), got {number}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.redrive",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help="CDK stack (default %(default)s)")
    parser.add_argument("--queue-url", help="one dead-letter queue's URL (skips the stack lookup)")
    parser.add_argument("--region", help="AWS region (default: boto3's)")
    parser.add_argument("--profile", help="AWS profile (default: boto3's)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("start", "move the waiting messages back to their source queues, then show progress"),
        ("status", "messages waiting and the latest move tasks"),
        ("cancel", "stop a running move task"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--queue", choices=("upload", "async", "all"), default="upload", help="which DLQ (default %(default)s)"
        )
        if name == "start":
            command.add_argument(
                "--max-per-second", type=_max_per_second, help="fixed rate, 1-500 (default: SQS's adaptive rate)"
            )
            command.add_argument("--no-watch", action="store_true", help="start and return at once")
            command.add_argument(
                "--interval",
                type=float,
                default=DEFAULT_INTERVAL_SECONDS,
                help="seconds between polls (%(default)s)",
            )
    return parser


@dataclass
class Clients:
    sqs: Any
    cloudformation: Any


def _boto3_clients(region: str | None, profile: str | None) -> Clients:
    import boto3  # imported late so --help works without AWS configured

    session = boto3.session.Session(region_name=region, profile_name=profile)
    return Clients(sqs=session.client("sqs"), cloudformation=session.client("cloudformation"))


def _queues(args: argparse.Namespace, clients: Clients) -> list[DeadLetterQueue]:
    if args.queue_url:
        if not args.queue_url.startswith(("https://", "http://")):
            raise RedriveError(f"--queue-url must be a queue URL (https://sqs...), got {args.queue_url!r}")
        pairs = [(args.queue if args.queue != "all" else "given", args.queue_url)]
    else:
        pairs = queue_urls(stack_outputs(clients.cloudformation, args.stack_name), args.queue, args.stack_name)
    return [describe(clients.sqs, label, url) for label, url in pairs]


def run(
    args: argparse.Namespace, clients: Clients, out: TextIO, *, sleep: Callable[[float], None] = time.sleep
) -> int:
    queues = _queues(args, clients)
    if args.command == "status":
        for queue in queues:
            out.write(
                f"{queue.label} DLQ {_name(queue.url)}: {queue.waiting:,} waiting, {queue.in_flight:,} in flight; "
                f"sources: {', '.join(map(_name, queue.sources)) or 'none'}\n"
            )
            for task in latest_tasks(clients.sqs, queue, count=10):
                out.write(f"  {render(task)}\n")
        return 0
    if args.command == "cancel":
        cancelled = 0
        for queue in queues:
            moved = cancel(clients.sqs, queue)
            if moved is not None:
                cancelled += 1
                out.write(f"{queue.label} DLQ: cancelling; {moved:,} messages had been moved (they stay moved)\n")
        if not cancelled:
            raise RedriveError(f"no move task is running on {', '.join(_name(queue.url) for queue in queues)}")
        return 0
    # Every queue is checked before any move starts: a refusal leaves nothing half done.
    movable = [queue for queue in queues if can_start(clients.sqs, queue)]
    for queue in queues:
        if queue not in movable:
            out.write(f"{queue.label} DLQ {_name(queue.url)}: empty, nothing to redrive\n")
    started = []
    for queue in movable:
        handle = start(clients.sqs, queue, max_per_second=args.max_per_second)
        out.write(
            f"{queue.label} DLQ {_name(queue.url)}: moving {queue.waiting:,} messages back to "
            f"{', '.join(map(_name, queue.sources))} (task {handle})\n"
        )
        started.append(queue)
    if args.no_watch or not started:
        return 0
    failed = False
    try:
        for queue in started:
            final = watch(clients.sqs, queue, out=out, interval=args.interval, sleep=sleep)
            failed = failed or final.get("Status") != "COMPLETED"
    except KeyboardInterrupt:
        out.write("\nstopped watching; the move continues (python -m tools.redrive status)\n")
        return 130
    return 1 if failed else 0


def main(
    argv: Sequence[str] | None = None,
    *,
    clients: Clients | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return run(args, clients or _boto3_clients(args.region, args.profile), out, sleep=sleep)
    except RedriveError as error:
        err.write(f"error: {error}\n")
        return 2
    except ClientError as error:
        info = error.response.get("Error", {})
        err.write(f"error: AWS {info.get('Code', '?')}: {info.get('Message', error)}\n")
        return 1
    except BotoCoreError as error:
        err.write(f"error: {error}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
