"""The deployed system's settings the cost model needs, read through the app's own config model.

`stacks.config.AppConfig` parses cdk.json's `photo_labeler` context (cdk.json lists only what differs from the
defaults) and holds every default once; it imports no CDK library, so this CLI stays light. Errors are the app's
one-line messages naming the dotted key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.config import AppConfig
from stacks.config_parsing import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = PROJECT_ROOT / "cdk.json"
SERVING_PROPERTIES = PROJECT_ROOT / "model_code" / "serving.properties"
CONTEXT_KEY = "photo_labeler"
_DEFAULTS = AppConfig()


class SettingsError(ValueError):
    """A setting the model reads is missing its file, of the wrong type or out of range; names the key."""


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
        )


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
