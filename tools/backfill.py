"""Start, watch, stop and redrive a backfill (the stack's Step Functions Distributed Map).

    python -m tools.backfill start --prefix archive/2019/ [--reclassify] [--max-concurrency 8] [--watch]
    python -m tools.backfill start --manifest s3://inventory-bucket/reports/.../manifest.json
    python -m tools.backfill watch  <execution-arn>     # live bar until it ends (Ctrl-C leaves it running)
    python -m tools.backfill status <execution-arn>     # one line; the summary once it has ended
    python -m tools.backfill stop   <execution-arn>
    python -m tools.backfill redrive <execution-arn>    # re-run only the failed batches of a failed/stopped one
    python -m tools.backfill list                       # recent backfills

The state machine ARN comes from the stack's `BackfillStateMachineArn` output (`--stack-name`, default
`photo-labeler`) or `--state-machine-arn`. Credentials and region are boto3's usual ones (`--region`,
`--profile`, or the environment).

Progress is the map run's item counters (states:DescribeMapRun): processed = items in batches that succeeded
(labelled, or skipped because already labelled), failed = items in batches that failed after their retries,
remaining = total - processed - failed. While the reader is still listing the bucket, `total` grows, so the ETA
is a lower bound until the listing ends. The rate is measured over the last `--rate-window` seconds
(tools/backfill_progress.py).

Stopping is safe: every finished photo is in the labels table, and starting the same prefix again skips them
with one read each. One backfill at a time: `start` refuses while another is running (`--allow-parallel`
overrides), because two would double the load on the endpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from tools.backfill_progress import (
    DEFAULT_RATE_WINDOW_SECONDS,
    Progress,
    RateMeter,
    read_progress,
    render,
    summary_lines,
)

DEFAULT_STACK_NAME = "photo-labeler"  # config name_prefix: the stack is named after it
STATE_MACHINE_OUTPUT = "BackfillStateMachineArn"
INVENTORY_BUCKET_OUTPUT = "BackfillInventoryBucket"
IMAGE_BUCKET_OUTPUT = "ImageBucketName"
DEFAULT_INTERVAL_SECONDS = 10.0
EXECUTION_NAME_MAX = 80  # Step Functions' limit
_NAME_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_-]+")
_S3_URI_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")


class BackfillError(Exception):
    """A user mistake or a state the CLI cannot act on; the message says what to do."""


# -- input -------------------------------------------------------------------------------------------------


def build_input(
    *, prefix: str | None, manifest: str | None, reclassify: bool, max_concurrency: int | None
) -> dict[str, Any]:
    """The execution input the state machine's CheckInput state accepts."""
    if (prefix is None) == (manifest is None):
        raise BackfillError("give exactly one of --prefix and --manifest")
    payload: dict[str, Any] = {"reclassify": reclassify}
    if max_concurrency is not None:
        if max_concurrency < 1:
            raise BackfillError(f"--max-concurrency must be >= 1, got {max_concurrency}")
        payload["max_concurrency"] = max_concurrency
    if prefix is not None:
        if prefix.startswith("/") or prefix.startswith("s3://"):
            raise BackfillError(
                f"--prefix is a key prefix inside the image bucket (like archive/2019/), got {prefix!r}"
            )
        payload["prefix"] = prefix
        return payload
    bucket, key = parse_s3_uri(manifest or "")
    if not key.endswith("manifest.json"):
        raise BackfillError(f"--manifest must point at an S3 Inventory manifest.json, got {manifest!r}")
    payload["manifest_key"] = key
    payload["_manifest_bucket"] = bucket  # checked against the stack, then removed (not part of the input)
    return payload


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = _S3_URI_RE.match(uri)
    if not match:
        raise BackfillError(f"expected s3://bucket/key, got {uri!r}")
    return match.group("bucket"), match.group("key")


def check_manifest(s3: Any, bucket: str, key: str, image_bucket: str | None) -> dict[str, Any]:
    """Read manifest.json and refuse what the map cannot use: not CSV, or an inventory of another bucket."""
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except json.JSONDecodeError as error:
        raise BackfillError(f"s3://{bucket}/{key} is not JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise BackfillError(f"s3://{bucket}/{key} is not an S3 Inventory manifest (not an object)")
    file_format = manifest.get("fileFormat")
    if file_format != "CSV":
        raise BackfillError(
            f"the inventory is {file_format!r}; the Distributed Map reads only CSV inventories "
            "(configure the S3 Inventory report with format CSV)"
        )
    source = manifest.get("sourceBucket")
    if image_bucket is not None and source != image_bucket:
        raise BackfillError(f"the inventory lists bucket {source!r}, not the image bucket {image_bucket!r}")
    return manifest


def execution_name(payload: dict[str, Any], now: datetime) -> str:
    """Readable and unique: backfill-<prefix or manifest date>-<UTC time>."""
    source = payload.get("prefix") or payload.get("manifest_key", "").rsplit("/", 2)[-2:][0]
    slug = _NAME_UNSAFE_RE.sub("-", source).strip("-")[:40] or "all"
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"backfill-{slug}-{stamp}"[:EXECUTION_NAME_MAX]


# -- stack lookups -------------------------------------------------------------------------------------------


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def resolve_state_machine_arn(outputs: dict[str, str], stack_name: str) -> str:
    arn = outputs.get(STATE_MACHINE_OUTPUT)
    if not arn:
        raise BackfillError(
            f"stack {stack_name!r} has no {STATE_MACHINE_OUTPUT} output: the backfill is deployed together with "
            "the endpoint (set endpoint.model_data_uri and deploy), or pass --state-machine-arn"
        )
    return arn


# -- commands ------------------------------------------------------------------------------------------------


def running_executions(sfn: Any, state_machine_arn: str) -> list[str]:
    pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, statusFilter="RUNNING"
    )
    return [e["executionArn"] for page in pages for e in page["executions"]]


def start(
    sfn: Any, state_machine_arn: str, payload: dict[str, Any], *, now: datetime, allow_parallel: bool = False
) -> str:
    running = running_executions(sfn, state_machine_arn)
    if running and not allow_parallel:
        raise BackfillError(
            f"a backfill is already running ({running[0]}); two would double the endpoint's load. Wait, stop it "
            "(python -m tools.backfill stop ...), or pass --allow-parallel"
        )
    response = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=execution_name(payload, now), input=json.dumps(payload)
    )
    return response["executionArn"]


def watch(
    sfn: Any,
    execution_arn: str,
    *,
    out: TextIO,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    rate_window: float = DEFAULT_RATE_WINDOW_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    live: bool | None = None,
) -> Progress:
    """Print progress every `interval` s until the execution ends; rewrite one line on a terminal."""
    live = out.isatty() if live is None else live
    meter = RateMeter(rate_window)
    while True:
        progress = read_progress(sfn, execution_arn)
        meter.add(clock(), progress.succeeded + progress.failed)
        line = render(progress, meter.rate)
        if live:
            out.write("\r\033[K" + line)
        else:
            out.write(line + "\n")
        out.flush()
        if progress.done:
            if live:
                out.write("\n")
            return progress
        sleep(interval)


# -- command line --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.backfill",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help="CDK stack (default %(default)s)")
    parser.add_argument("--state-machine-arn", help="skip the stack lookup")
    parser.add_argument("--region", help="AWS region (default: boto3's)")
    parser.add_argument("--profile", help="AWS profile (default: boto3's)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start_parser = commands.add_parser("start", help="start a backfill of a prefix or an S3 Inventory manifest")
    source = start_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prefix", help="key prefix in the image bucket, e.g. archive/2019/ ('' = everything)")
    source.add_argument(
        "--manifest", help="s3://bucket/.../manifest.json of a CSV S3 Inventory of the image bucket"
    )
    start_parser.add_argument(
        "--reclassify", action="store_true", help="re-label photos labelled by another model (default: skip them)"
    )
    start_parser.add_argument(
        "--max-concurrency", type=int, help="batches at once (<= the deployed backfill.max_concurrency)"
    )
    start_parser.add_argument("--watch", action="store_true", help="then show progress until it ends")
    start_parser.add_argument("--allow-parallel", action="store_true", help="start even if one is running")
    _add_watch_options(start_parser)

    for name, text in (
        ("status", "one progress line; the summary once it has ended"),
        ("watch", "live progress until it ends"),
        ("stop", "stop a running backfill (finished photos stay labelled)"),
        ("redrive", "re-run the failed batches of a failed, timed-out or stopped backfill"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("execution_arn", metavar="EXECUTION", help="execution ARN (printed by start)")
        if name == "watch":
            _add_watch_options(command)
        if name == "stop":
            command.add_argument("--cause", default="stopped with tools.backfill", help="recorded reason")
    listing = commands.add_parser("list", help="recent backfill executions")
    listing.add_argument("--max", type=int, default=10, help="how many (default %(default)s)")
    return parser


def _add_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL_SECONDS, help="seconds between polls (%(default)s)"
    )
    parser.add_argument(
        "--rate-window",
        type=float,
        default=DEFAULT_RATE_WINDOW_SECONDS,
        help="seconds of history behind the rate and ETA (%(default)s)",
    )


@dataclass
class Clients:
    sfn: Any
    cloudformation: Any
    s3: Any


def _boto3_clients(region: str | None, profile: str | None) -> Clients:
    import boto3  # the CLI's only AWS dependency; imported late so --help works without it configured

    session = boto3.session.Session(region_name=region, profile_name=profile)
    return Clients(
        sfn=session.client("stepfunctions"),
        cloudformation=session.client("cloudformation"),
        s3=session.client("s3"),
    )


def run(args: argparse.Namespace, clients: Clients, out: TextIO, *, now: Callable[[], datetime]) -> int:
    if args.command in ("status", "watch", "stop", "redrive"):
        return _run_on_execution(args, clients, out)
    outputs: dict[str, str] = {}
    if args.state_machine_arn:
        state_machine_arn = args.state_machine_arn
    else:
        outputs = stack_outputs(clients.cloudformation, args.stack_name)
        state_machine_arn = resolve_state_machine_arn(outputs, args.stack_name)
    if args.command == "list":
        response = clients.sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=args.max)
        for execution in response["executions"]:
            out.write(
                f"{execution['startDate']:%Y-%m-%d %H:%M}  {execution['status']:<10} {execution['executionArn']}\n"
            )
        return 0
    payload = build_input(
        prefix=args.prefix,
        manifest=args.manifest,
        reclassify=args.reclassify,
        max_concurrency=args.max_concurrency,
    )
    manifest_bucket = payload.pop("_manifest_bucket", None)
    if manifest_bucket is not None:
        expected = outputs.get(INVENTORY_BUCKET_OUTPUT)
        if outputs and expected is None:
            raise BackfillError(
                "the deployed backfill has no manifest input: set backfill.inventory_bucket and deploy"
            )
        if expected is not None and manifest_bucket != expected:
            raise BackfillError(
                f"the deployed backfill reads manifests from bucket {expected!r}, not {manifest_bucket!r}"
            )
        manifest = check_manifest(
            clients.s3, manifest_bucket, payload["manifest_key"], outputs.get(IMAGE_BUCKET_OUTPUT)
        )
        out.write(
            f"inventory of s3://{manifest.get('sourceBucket')}: {len(manifest.get('files', []))} data file(s)\n"
        )
    execution_arn = start(clients.sfn, state_machine_arn, payload, now=now(), allow_parallel=args.allow_parallel)
    out.write(f"started {execution_arn}\n")
    out.write(f"watch it:  python -m tools.backfill watch {execution_arn}\n")
    if args.watch:
        progress = watch(clients.sfn, execution_arn, out=out, interval=args.interval, rate_window=args.rate_window)
        out.write("\n".join(summary_lines(progress)) + "\n")
        return 0 if progress.status == "SUCCEEDED" else 1
    return 0


def _run_on_execution(args: argparse.Namespace, clients: Clients, out: TextIO) -> int:
    arn = args.execution_arn
    if not arn.startswith("arn:") or ":execution:" not in arn:
        raise BackfillError(f"EXECUTION must be an execution ARN (arn:...:execution:...), got {arn!r}")
    if args.command == "stop":
        clients.sfn.stop_execution(executionArn=arn, cause=args.cause)
        out.write(f"stopped {arn}; finished photos stay labelled and a new start skips them\n")
        return 0
    if args.command == "redrive":
        clients.sfn.redrive_execution(executionArn=arn)
        out.write(f"redriving the failed batches of {arn}\nwatch it:  python -m tools.backfill watch {arn}\n")
        return 0
    if args.command == "watch":
        try:
            progress = watch(clients.sfn, arn, out=out, interval=args.interval, rate_window=args.rate_window)
        except KeyboardInterrupt:
            out.write(f"\nstopped watching; the backfill keeps running (python -m tools.backfill stop {arn})\n")
            return 130
    else:
        progress = read_progress(clients.sfn, arn)
        out.write(render(progress, None) + "\n")
    if progress.done:
        out.write("\n".join(summary_lines(progress)) + "\n")
    return 0 if progress.status in ("SUCCEEDED", "RUNNING") else 1


def main(
    argv: Sequence[str] | None = None,
    *,
    clients: Clients | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is in requirements-dev.txt
        BotoCoreError = ClientError = RuntimeError  # type: ignore[misc,assignment]
    try:
        return run(args, clients or _boto3_clients(args.region, args.profile), out, now=now)
    except BackfillError as error:
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
