"""N reviewers on one backlog: decisions per minute, conflicts, photos decided twice; with leases and without.

    .venv/bin/python benchmarks/bench_review_leases.py [--reviewers 4] [--photos 200] [--think-ms 20] [--batch 5]

Each simulated reviewer is a thread driving the review service (review_api/core.py, the Lambda's logic, with its
DynamoDB data access on moto in-process) the way the page does:
- `claims` (the page now): ask for work (POST /api/claims: photos leased to this reviewer), decide each;
- `listing` (the page before): read the oldest NEEDS_REVIEW photos (GET /api/photos) and decide them in order;
  a 409 skips to the next photo.
A decision takes --think-ms (a person looking, scaled down), then its request. moto does not make a conditional
write atomic across threads; DynamoDB does per item, so every DynamoDB call here holds one lock (the emulator is
then as strict as the service, and slower than it: compare the two strategies, not the absolute rate with AWS's).

Prints, per strategy: decisions, decisions per minute, conflicts (409s: work thrown away), photos decided twice
(more than one decision in the photo's history; the target is 0), and photos left undecided.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
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
from review_api.aws import DynamoLabelTable  # noqa: E402
from review_api.core import ReviewConfig, ReviewService  # noqa: E402
from review_api.identity import Reviewer  # noqa: E402
from review_api.inputs import Conflict, ListQuery  # noqa: E402
from stacks.review import history_table  # noqa: E402

BUCKET, TABLE, HISTORY = "bench-photos", "bench-labels", "bench-review-history"


class Serialised:
    """A DynamoDB client whose calls run one at a time (each DynamoDB operation is atomic per item)."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client, self._lock = client, lock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


class NoPhotos:
    """Presigned URLs are not what is measured here."""

    def presign(self, bucket: str, key: str, version_id: str | None, expires_in: int) -> str:
        return f"https://{bucket}.s3.amazonaws.com/{key}"

    def exists(self, bucket: str, key: str, version_id: str | None) -> bool:
        return True


def seed(dynamodb: Any, photos: int) -> None:
    serializer = TypeSerializer()
    items = [
        {
            "image_uri": f"s3://{BUCKET}/uploads/h{n % 7}/{n:06d}.jpg",
            "status": "NEEDS_REVIEW",
            "label": "Room",
            "confidence": "0.5",
            "classified_at": f"2026-11-30T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000+00:00",
            "model": "bench",
        }
        for n in range(photos)
    ]
    for start in range(0, len(items), 25):
        batch = [
            {"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}}
            for item in items[start : start + 25]
        ]
        dynamodb.batch_write_item(RequestItems={TABLE: batch})


def run(strategy: str, reviewers: int, photos: int, think: float, batch: int) -> dict[str, Any]:
    with mock_aws():
        raw = boto3.client("dynamodb")
        create_labels_table(raw, TABLE)
        raw.create_table(**history_table.create_table_kwargs(HISTORY))
        seed(raw, photos)
        lock = threading.Lock()
        service = ReviewService(
            ReviewConfig(bucket=BUCKET, labels=Taxonomy.load().labels),
            table=DynamoLabelTable(Serialised(raw, lock), TABLE, HISTORY),
            photos=NoPhotos(),
        )
        counts: Counter[str] = Counter()
        counts_lock = threading.Lock()

        def review(number: int) -> None:
            me = Reviewer(sub=f"sub-{number}", name=f"reviewer{number}@example.com")
            while True:
                if strategy == "claims":
                    page = service.claim(ListQuery(limit=batch), me)
                else:
                    page = service.list(ListQuery(limit=batch * reviewers), me=me)
                if not page["photos"]:
                    return
                for photo in page["photos"]:
                    time.sleep(think)
                    try:
                        service.decide(photo["id"], {"decision": "confirm", "token": photo["token"]}, me)
                        outcome = "decisions"
                    except Conflict:
                        outcome = "conflicts"
                    with counts_lock:
                        counts[outcome] += 1

        began = time.monotonic()
        threads = [threading.Thread(target=review, args=(n,)) for n in range(reviewers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - began
        history = raw.scan(TableName=HISTORY)["Items"]
        per_photo = Counter(entry["image_uri"]["S"] for entry in history if entry["action"]["S"] != "undo")
        left = raw.query(
            TableName=TABLE,
            IndexName="by-status",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "NEEDS_REVIEW"}},
            Select="COUNT",
        )["Count"]
        return {
            "strategy": strategy,
            "decisions": counts["decisions"],
            "per_minute": counts["decisions"] / seconds * 60,
            "conflicts": counts["conflicts"],
            "decided_twice": sum(count > 1 for count in per_photo.values()),
            "left": left,
            "seconds": seconds,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=4)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--think-ms", type=float, default=20.0, help="time a reviewer looks at a photo")
    parser.add_argument("--batch", type=int, default=5, help="photos claimed at a time (the page's)")
    args = parser.parse_args()
    print(
        f"{args.reviewers} reviewers, {args.photos} photos waiting, {args.think_ms:.0f} ms per look, "
        f"claims of {args.batch} (moto in-process, one DynamoDB call at a time)"
    )
    print(
        f"{'strategy':<9} {'decisions':>9} {'per minute':>10} {'conflicts':>9} {'decided twice':>13} {'left':>5}"
    )
    for strategy in ("listing", "claims"):
        result = run(strategy, args.reviewers, args.photos, args.think_ms / 1000, args.batch)
        print(
            f"{result['strategy']:<9} {result['decisions']:>9} {result['per_minute']:>10.0f} "
            f"{result['conflicts']:>9} {result['decided_twice']:>13} {result['left']:>5}   "
            f"({result['seconds']:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
