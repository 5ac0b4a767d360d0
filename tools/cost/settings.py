"""The deployed system's settings the cost model needs, read through the app's own config model.

`stacks.config.AppConfig` parses cdk.json's `photo_labeler` context (cdk.json lists only what differs from the
defaults) and holds every default once; it imports no CDK library, so this CLI stays light. Errors are the app's
one-line messages naming the dotted key.

Scheduled mode (`endpoint.mode: scheduled`, `photo_labeler.scheduled`, docs/scheduled-mode.md) is read from the
app's `scheduled` section when AppConfig has one; until then `ScheduledSettings` holds the design's defaults under
the same key names (a test holds them equal once the section exists).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.config import AppConfig
from stacks.config.parsing import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = PROJECT_ROOT / "cdk.json"
SERVING_PROPERTIES = PROJECT_ROOT / "model_code" / "serving.properties"
CONTEXT_KEY = "photo_labeler"
_DEFAULTS = AppConfig()


class SettingsError(ValueError):
    """A setting the model reads is missing its file, of the wrong type or out of range; names the key."""


_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_RATE_HOURS = {"minute": 1 / 60, "minutes": 1 / 60, "hour": 1.0, "hours": 1.0, "day": 24.0, "days": 24.0}


def rate_hours(schedule: str) -> float | None:
    """Hours between two runs of an EventBridge Scheduler `rate(...)` expression; None for `cron(...)`."""
    match = _RATE_RE.match(schedule.strip())
    if match is None:
        return None
    return int(match.group(1)) * _RATE_HOURS[match.group(2)]


@dataclass(frozen=True)
class ScheduledSettings:
    """`photo_labeler.scheduled` (docs/scheduled-mode.md): the windows and the labelling job, same key names."""

    schedule: str = "rate(6 hours)"
    window_interval_hours: float | None = None  # None: from the rate() schedule
    backlog_threshold: int = 10_000  # PENDING photos that start a window early
    backlog_check_minutes: int = 15  # how often the backlog is counted
    instance_type: str = "ml.g5.xlarge"
    max_hosts: int = 4
    photos_per_hour_per_host: float = 5_300.0  # the job's sizing throughput (the seed's 674 s per 1,000)
    target_job_minutes: int = 60  # hosts = ceil(photos / (throughput x target)), clamped to 1..max_hosts
    max_job_minutes: int = 330  # MaxRuntimeInSeconds; a window takes at most max_hosts x throughput x 80 % of it
    use_spot: bool = True
    spot_wait_minutes: int = 60  # extra time Spot may take before the on-demand fallback
    on_demand_fallback: bool = True
    photos_per_shard: int = 2_000  # manifest lines per shard; each host gets whole shards
    batch_size: int = 64  # photos per engine call: the checkpoint step

    @property
    def interval_hours(self) -> float:
        if self.window_interval_hours is not None:
            return float(self.window_interval_hours)
        hours = rate_hours(self.schedule)
        if hours is None:
            raise SettingsError(
                f"{CONTEXT_KEY}.scheduled.window_interval_hours: required with a cron() schedule ({self.schedule})"
            )
        return hours

    @property
    def window_cap(self) -> float:
        """Most photos one window takes (the rest wait for the next): 80 % of the longest job on every host."""
        return self.max_hosts * self.photos_per_hour_per_host * 0.8 * self.max_job_minutes / 60

    @classmethod
    def from_section(cls, section: Any) -> ScheduledSettings:
        """The app's `scheduled` section (any object with these attribute names)."""
        names = [name for name in cls.__dataclass_fields__ if hasattr(section, name)]
        return cls(**{name: getattr(section, name) for name in names})


@dataclass(frozen=True)
class Settings:
    """Defaults are the app's (AppConfig) and model_code/serving.properties'."""

    instance_type: str = _DEFAULTS.endpoint.instance_type
    min_capacity: int = _DEFAULTS.endpoint.min_capacity
    max_capacity: int = _DEFAULTS.endpoint.max_capacity
    target_in_flight: float = _DEFAULTS.endpoint.target_concurrent_requests_per_model
    scale_out_cooldown_seconds: int = _DEFAULTS.endpoint.scale_out_cooldown_seconds
    scale_in_cooldown_seconds: int = _DEFAULTS.endpoint.scale_in_cooldown_seconds
    upload_batch_size: int = _DEFAULTS.upload.batch_size
    upload_max_concurrency: int = _DEFAULTS.upload.max_concurrency
    upload_memory_mb: int = _DEFAULTS.upload.function_memory_mb
    backfill_items_per_batch: int = _DEFAULTS.backfill.items_per_batch
    backfill_max_concurrency: int = _DEFAULTS.backfill.max_concurrency
    backfill_memory_mb: int = _DEFAULTS.backfill.function_memory_mb
    engine_batch: int = 12  # option.max_rolling_batch_size
    labels: int = len(_DEFAULTS.taxonomy.labels)  # one PhotosByLabel metric per label
    mode: str = _DEFAULTS.endpoint.mode  # realtime | async | scheduled (the reports price all three)
    async_backlog_target: float = _DEFAULTS.async_inference.backlog_target_per_instance
    review_enabled: bool = _DEFAULTS.review.enabled
    scheduled: ScheduledSettings = field(default_factory=lambda: _scheduled_defaults(_DEFAULTS))

    @classmethod
    def from_config(cls, config: AppConfig, *, engine_batch: int = 12, labels: int | None = None) -> Settings:
        endpoint, upload, backfill = config.endpoint, config.upload, config.backfill
        return cls(
            instance_type=endpoint.instance_type,
            min_capacity=endpoint.min_capacity,
            max_capacity=endpoint.max_capacity,
            target_in_flight=float(endpoint.target_concurrent_requests_per_model),
            scale_out_cooldown_seconds=endpoint.scale_out_cooldown_seconds,
            scale_in_cooldown_seconds=endpoint.scale_in_cooldown_seconds,
            upload_batch_size=upload.batch_size,
            upload_max_concurrency=upload.max_concurrency,
            upload_memory_mb=upload.function_memory_mb,
            backfill_items_per_batch=backfill.items_per_batch,
            backfill_max_concurrency=backfill.max_concurrency,
            backfill_memory_mb=backfill.function_memory_mb,
            engine_batch=engine_batch,
            labels=len(config.taxonomy.labels) if labels is None else labels,
            mode=endpoint.mode,
            async_backlog_target=config.async_inference.backlog_target_per_instance,
            review_enabled=config.review.enabled,
            scheduled=_scheduled_defaults(config),
        )


def _scheduled_defaults(config: AppConfig) -> ScheduledSettings:
    section = getattr(config, "scheduled", None)  # AppConfig gains it with endpoint.mode scheduled (issue 18)
    return ScheduledSettings() if section is None else ScheduledSettings.from_section(section)


def from_context(context: Mapping[str, Any], *, engine_batch: int = 12, labels: int | None = None) -> Settings:
    """Settings from the `photo_labeler` object; absent keys keep the app's defaults."""
    try:
        config = AppConfig.from_context(context)
    except ConfigError as error:
        raise SettingsError(str(error)) from None
    return Settings.from_config(config, engine_batch=engine_batch, labels=labels)


def load(cdk_json: Path = CDK_JSON, serving_properties: Path = SERVING_PROPERTIES) -> Settings:
    """The committed configuration: cdk.json's context, the engine batch and the taxonomy's size."""
    try:
        document = json.loads(cdk_json.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SettingsError(f"cannot read {cdk_json}: {error}") from error
    context = document.get("context", {}).get(CONTEXT_KEY, {})
    return from_context(context, engine_batch=_engine_batch(serving_properties))


def _engine_batch(path: Path) -> int:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error}") from error
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "option.max_rolling_batch_size":
            try:
                return int(value.strip())
            except ValueError:
                raise SettingsError(f"{path.name}: option.max_rolling_batch_size is not an integer") from None
    return Settings.engine_batch
