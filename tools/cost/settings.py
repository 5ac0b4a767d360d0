"""The deployed system's settings the cost model needs, read from cdk.json's `photo_labeler` context.

The app's own reader (`stacks.config.AppConfig`) imports the CDK library (through the LMI image table); this CLI
stays light and reads the same keys itself, with the same defaults and one-line errors naming the dotted key.
tests/tools/cost/test_settings.py holds the two readers equal on the committed cdk.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classification.contract import DEFAULT_TAXONOMY_PATH, Taxonomy

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = PROJECT_ROOT / "cdk.json"
SERVING_PROPERTIES = PROJECT_ROOT / "model_code" / "serving.properties"
CONTEXT_KEY = "photo_labeler"


class SettingsError(ValueError):
    """A setting the model reads is missing its file, of the wrong type or out of range; names the key."""


@dataclass(frozen=True)
class Settings:
    """Defaults are the app's (stacks/config.py, stacks/config_sections.py, model_code/serving.properties)."""

    instance_type: str = "ml.g5.xlarge"
    min_capacity: int = 1
    max_capacity: int = 4
    target_in_flight: float = 6.0  # endpoint.target_concurrent_requests_per_model
    scale_out_cooldown_seconds: int = 60
    scale_in_cooldown_seconds: int = 600
    upload_batch_size: int = 4
    upload_max_concurrency: int = 12
    upload_memory_mb: int = 1024
    backfill_items_per_batch: int = 25
    backfill_max_concurrency: int = 8
    backfill_memory_mb: int = 1024
    engine_batch: int = 12  # option.max_rolling_batch_size
    labels: int = 26  # taxonomy size: one PhotosByLabel metric per label


# (section, key in cdk.json) -> Settings field; all integers except the target.
_KEYS: dict[tuple[str, str], str] = {
    ("endpoint", "min_capacity"): "min_capacity",
    ("endpoint", "max_capacity"): "max_capacity",
    ("endpoint", "target_concurrent_requests_per_model"): "target_in_flight",
    ("endpoint", "scale_out_cooldown_seconds"): "scale_out_cooldown_seconds",
    ("endpoint", "scale_in_cooldown_seconds"): "scale_in_cooldown_seconds",
    ("upload", "batch_size"): "upload_batch_size",
    ("upload", "max_concurrency"): "upload_max_concurrency",
    ("upload", "function_memory_mb"): "upload_memory_mb",
    ("backfill", "items_per_batch"): "backfill_items_per_batch",
    ("backfill", "max_concurrency"): "backfill_max_concurrency",
    ("backfill", "function_memory_mb"): "backfill_memory_mb",
}


def from_context(context: Mapping[str, Any], *, engine_batch: int = 12, labels: int = 26) -> Settings:
    """Settings from the `photo_labeler` object; absent keys keep the app's defaults."""
    values: dict[str, Any] = {"engine_batch": engine_batch, "labels": labels}
    instance_type = _section(context, "endpoint").get("instance_type", Settings.instance_type)
    if not isinstance(instance_type, str):
        raise SettingsError(f"{CONTEXT_KEY}.endpoint.instance_type: must be a string, got {instance_type!r}")
    values["instance_type"] = instance_type
    for (section, key), name in _KEYS.items():
        raw = _section(context, section).get(key)
        if raw is None:
            continue
        dotted = f"{CONTEXT_KEY}.{section}.{key}"
        numeric = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if not numeric or (name != "target_in_flight" and not isinstance(raw, int)):
            raise SettingsError(f"{dotted}: must be a number, got {raw!r}")
        minimum = 0 if name.endswith("cooldown_seconds") else 1
        if raw < minimum:
            raise SettingsError(f"{dotted}: must be >= {minimum}, got {raw}")
        values[name] = float(raw) if name == "target_in_flight" else raw
    settings = Settings(**values)
    if settings.max_capacity < settings.min_capacity:
        raise SettingsError(
            f"{CONTEXT_KEY}.endpoint.max_capacity: must be >= min_capacity ({settings.min_capacity}), "
            f"got {settings.max_capacity}"
        )
    return settings


def load(cdk_json: Path = CDK_JSON, serving_properties: Path = SERVING_PROPERTIES) -> Settings:
    """The committed configuration: cdk.json's context, the engine batch and the taxonomy's size."""
    try:
        document = json.loads(cdk_json.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SettingsError(f"cannot read {cdk_json}: {error}") from error
    context = document.get("context", {}).get(CONTEXT_KEY, {})
    if not isinstance(context, Mapping):
        raise SettingsError(f"{cdk_json}: context.{CONTEXT_KEY} must be an object")
    taxonomy_file = context.get("taxonomy_file")
    taxonomy = Taxonomy.load(PROJECT_ROOT / taxonomy_file if taxonomy_file else DEFAULT_TAXONOMY_PATH)
    return from_context(context, engine_batch=_engine_batch(serving_properties), labels=len(taxonomy.labels))


def _section(context: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = context.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise SettingsError(f"{CONTEXT_KEY}.{name}: must be an object, got {type(section).__name__}")
    return section


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
