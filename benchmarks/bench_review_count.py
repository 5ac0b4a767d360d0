"""The review queue on a large backlog: the first page with its "N left", a sparse filter, and the exact count.

    .venv/bin/python benchmarks/bench_review_count.py [--photos 100000] [--sparse-at 0.02]

Seeds --photos NEEDS_REVIEW items (labels-table shaped, ~400 bytes each) into moto in-process, plus one photo of a
hotel nobody else has at --sparse-at of the backlog (oldest first), then times, through the review service
(review_api/core.py, the Lambda's logic and DynamoDB access) with its real time budgets:
- the first page of the default queue, with "N left" (count budget review_api.core.COUNT_BUDGET_SECONDS);
- the first page of the sparse filter (hotel=the rare one): photos found, cursor, index items read, time;
- following that filter's cursor until the photo appears (what the page does), requests and time;
- the exact count with no budget (how long "N left" would take without one).
moto evaluates a Query by walking every item of the table in Python, far slower than DynamoDB (which reads 1 MB,
~2,500 of these items, per call in tens of milliseconds): the budgets are what keep each request bounded either
way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
from boto3.dynamodb.types import TypeSerializer  # noqa: E402
from moto import mock_aws  # noqa: E402

from classification.contract import Taxonomy  # noqa: E402
from local_aws.emulation import create_labels_table  # noqa: E402
from review_api import core  # noqa: E402
from review_api.aws import DynamoLabelTable  # noqa: E402
from review_api.core import Budget, ReviewConfig, ReviewService  # noqa: E402
from review_api.inputs import ListQuery  # noqa: E402

BUCKET, TABLE = "bench-photos", "bench-labels"


class NoPhotos:
    def presign(self, bucket: str, key: str, version_id: str | None, expires_in: int) -> str:
        return f"https://{bucket}.s3.amazonaws.com/{key}"

    def exists(self, bucket: str, key: str, version_id: str | None) -> bool:
        return True


def _item(n: int, hotel: str) -> dict[str, Any]:
    return {
        "image_uri": f"s3://{BUCKET}/uploads/{hotel}/2026/11/30/photo-{n:07d}.jpg",
        "status": "NEEDS_REVIEW",
        "label": "Room",
        "confidence": "0.512345",
        "reason": "confidence 0.512 is below 0.8",
        "model": "llava-next-hotel-2026-11-01",
        "classified_at": f"2026-11-{1 + n // 86400:02d}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
        "etag": "0123456789abcdef0123456789abcdef",
        "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
        "source_last_modified": "2026-11-30T08:59:59.000000Z",
        "hotel_id": hotel,
    }


def seed(dynamodb: Any, photos: int, sparse_at: int) -> None:
    serializer = TypeSerializer()
    began = time.monotonic()
    batch: list[dict[str, Any]] = []
    for n in range(photos + 1):
        item = _item(n, "rare-hotel" if n == sparse_at else f"hotel-{n % 500:04d}")
        batch.append({"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}})
        if len(batch) == 25 or n == photos:
            dynamodb.batch_write_item(RequestItems={TABLE: batch})
            batch = []
        if n % 10000 == 0:
            print(f"\rseeding {n:,}/{photos:,} ({time.monotonic() - began:.0f} s)", end="", flush=True)
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--sparse-at", type=float, default=0.02, help="where the rare hotel's photo sits (0..1)")
    args = parser.parse_args()
    labels = Taxonomy.load().labels
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_labels_table(dynamodb, TABLE)
        seed(dynamodb, args.photos, int(args.photos * args.sparse_at))
        service = ReviewService(
            ReviewConfig(bucket=BUCKET, labels=labels),
            table=DynamoLabelTable(dynamodb, TABLE, "unused"),
            photos=NoPhotos(),
        )
        total = args.photos + 1
        print(
            f"{total:,} NEEDS_REVIEW photos on moto; budgets: list {core.LIST_BUDGET_SECONDS} s, "
            f"count {core.COUNT_BUDGET_SECONDS} s (API function timeout 15 s)"
        )

        began = time.monotonic()
        page = service.list(ListQuery(limit=25))
        print(
            f'first page of the queue: {len(page["photos"])} photos, "{page["remaining"]["count"]:,}'
            f'{"" if page["remaining"]["exact"] else "+"} left" (exact: {page["remaining"]["exact"]}) '
            f"in {time.monotonic() - began:.1f} s"
        )

        query = ListQuery.parse({"hotel": "rare-hotel"}, labels)
        began = time.monotonic()
        page = service.list(query)
        print(
            f"sparse filter, first answer: {len(page['photos'])} photos, "
            f"cursor {'yes' if page['cursor'] else 'no'}, "
            f'{page["examined"]:,} index items read, "{page["remaining"]["count"]}'
            f'{"" if page["remaining"]["exact"] else "+"} left" in {time.monotonic() - began:.1f} s'
        )
        requests, read = 1, page["examined"]
        while not page["photos"] and page["cursor"]:
            page = service.list(ListQuery.parse({"hotel": "rare-hotel", "cursor": page["cursor"]}, labels))
            requests, read = requests + 1, read + page["examined"]
        print(
            f"sparse filter, following the cursor: the photo after {requests} requests, {read:,} index items, "
            f"{time.monotonic() - began:.1f} s"
        )

        began = time.monotonic()
        count, exact = service._count(ListQuery(), Budget(float("inf"), time.monotonic))
        print(f"exact count with no budget: {count:,} (exact: {exact}) in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
