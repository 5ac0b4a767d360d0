"""A scheduled window's Lambda steps (stacks/labelling/window.py runs them in order). No boto3 here.

- survey: how many photos wait (counted up to a limit) and how long the oldest has waited; the state machine
  decides from it whether this window starts a job (docs/scheduled-mode.md, "Windows").
- plan: the oldest PENDING photo versions (at most the window's cap) as manifest shards in the work bucket, and
  the job's size: hosts = ceil(photos / (throughput x target duration)), clamped to 1..max_hosts; at least one
  shard per host, so ShardedByS3Key gives every host work.
- report: the hosts' summaries (labelling_job/progress.py, written with the checkpoint) summed.

PENDING items come from the labels table's by-status index, oldest first (its sort key is `classified_at`, since
when the photo waits). A photo replaced since it was recorded has one item, for its newest version: the manifest
names exactly the versions the table waits for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from labeller_inputs import ObjectRef, manifest_line
from window_files import CHECKPOINT_DIR, MANIFEST_DIR, SUMMARY_PREFIX, JobSummary, shard_key, total, window_prefix

PENDING = "PENDING"


class PendingIndex(Protocol):
    def pages(self) -> Iterator[list[Mapping[str, Any]]]:
        """The PENDING items, oldest first, a page at a time (DynamoDB Query pages)."""
        ...


class WorkStore(Protocol):
    def put_text(self, key: str, text: str) -> None: ...

    def read_texts(self, prefix: str) -> list[str]:
        """Every `.json` object whose key starts with `prefix`."""
        ...


@dataclass(frozen=True)
class WindowSettings:
    """What the state machine passes the plan step (the `scheduled` config section's values)."""

    max_photos: int
    photos_per_shard: int
    max_hosts: int
    photos_per_hour_per_host: int
    target_job_minutes: int

    @classmethod
    def from_event(cls, raw: Any) -> WindowSettings:
        if not isinstance(raw, Mapping):
            raise ValueError("'settings' must be an object")
        values = {}
        for name in cls.__dataclass_fields__:
            value = raw.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"settings.{name} must be an integer >= 1, got {value!r}")
            values[name] = value
        return cls(**values)

    def hosts_for(self, photos: int) -> int:
        per_host = self.photos_per_hour_per_host * self.target_job_minutes / 60
        return max(1, min(self.max_hosts, math.ceil(photos / per_host)))


@dataclass(frozen=True)
class Survey:
    pending: int  # counted up to the survey's limit
    oldest_age_seconds: int  # 0 when nothing waits


@dataclass(frozen=True)
class Plan:
    window_id: str
    photos: int
    hosts: int
    shards: int
    manifest_prefix: str  # key prefix of the shards in the work bucket (the manifest channel's S3 prefix)
    checkpoint_prefix: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Window:
    def __init__(
        self,
        *,
        index: PendingIndex,
        store: WorkStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._index = index
        self._store = store
        self._clock = clock

    def survey(self, limit: int) -> Survey:
        """Count PENDING photos up to `limit` (a backlog of millions is not read every check)."""
        pending = 0
        oldest: str | None = None
        for page in self._index.pages():
            if page and oldest is None:
                oldest = str(page[0].get("classified_at", ""))
            pending += len(page)
            if pending >= limit:
                break
        return Survey(pending=min(pending, limit), oldest_age_seconds=self._age_seconds(oldest))

    def plan(self, window_id: str, settings: WindowSettings) -> Plan:
        """Write the window's manifest shards (oldest photos first, at most settings.max_photos)."""
        refs = list(self._oldest_refs(settings.max_photos))
        hosts = settings.hosts_for(len(refs)) if refs else 0
        shard_count = max(hosts, math.ceil(len(refs) / settings.photos_per_shard)) if refs else 0
        for index, shard in enumerate(_split(refs, shard_count)):
            self._store.put_text(shard_key(window_id, index), "".join(manifest_line(ref) + "\n" for ref in shard))
        prefix = window_prefix(window_id)
        return Plan(
            window_id=window_id,
            photos=len(refs),
            hosts=hosts,
            shards=shard_count,
            manifest_prefix=prefix + MANIFEST_DIR,
            checkpoint_prefix=prefix + CHECKPOINT_DIR,
        )

    def report(self, window_id: str) -> dict[str, float]:
        """Every host's counts summed (hosts that never wrote a summary count as nothing done)."""
        texts = self._store.read_texts(window_prefix(window_id) + CHECKPOINT_DIR + SUMMARY_PREFIX)
        return total([JobSummary.from_json(text) for text in texts])

    def _oldest_refs(self, limit: int) -> Iterator[ObjectRef]:
        seen: set[str] = set()
        for page in self._index.pages():
            for item in page:
                ref = pending_ref(item)
                if ref is None or ref.image_uri in seen:
                    continue
                seen.add(ref.image_uri)
                yield ref
                if len(seen) >= limit:
                    return

    def _age_seconds(self, since: str | None) -> int:
        if not since:
            return 0
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            return 0
        return max(0, int((self._clock() - moment).total_seconds()))


def pending_ref(item: Mapping[str, Any]) -> ObjectRef | None:
    """The photo version a PENDING item waits for; None for an item that names none (never written so)."""
    uri, etag = item.get("image_uri"), item.get("etag")
    if item.get("status") != PENDING or not isinstance(uri, str) or not uri.startswith("s3://") or not etag:
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        return None
    hotel_id = item.get("hotel_id")
    return ObjectRef(bucket, key, str(etag), hotel_id=str(hotel_id) if hotel_id else None)


def _split(refs: list[ObjectRef], count: int) -> Iterable[list[ObjectRef]]:
    """`count` shards of nearly equal size, in order."""
    for index in range(count):
        yield refs[index * len(refs) // count : (index + 1) * len(refs) // count]


__all__ = ["PENDING", "Plan", "Survey", "Window", "WindowSettings", "pending_ref"]
