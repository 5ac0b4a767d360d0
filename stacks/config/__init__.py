"""The app's configuration: one frozen, typed, validated object (`AppConfig`) built once in app.py from cdk.json
context. Everything here is CDK-free, so tools, the docs generator and the local kit import it cheaply.

    app_config.py  AppConfig, the sections declared beside it (storage, endpoint, upload), from_context
    sections.py    the other sections: training, backfill, review, monitoring, async inference, scheduled
    fields.py      setting(default, rule): a field's default and the rule that validates and documents it
    parsing.py     the strict converter from JSON and `-c` strings to the dataclasses, and ConfigError

Import from here (`from stacks.config import AppConfig, ConfigError`): the names below are the public ones.
"""

from __future__ import annotations

from stacks.config.app_config import (
    ENDPOINT_MODES,
    ENDPOINT_NAME_MAX,
    AppConfig,
    EndpointSettings,
    StorageConfig,
    UploadPathConfig,
    endpoint_name,
)
from stacks.config.fields import RULE
from stacks.config.parsing import ConfigError
from stacks.config.sections import BackfillConfig, MonitoringConfig, ReviewPageConfig, TrainingPipelineConfig

__all__ = [
    "ENDPOINT_MODES",
    "ENDPOINT_NAME_MAX",
    "RULE",
    "AppConfig",
    "BackfillConfig",
    "ConfigError",
    "EndpointSettings",
    "MonitoringConfig",
    "ReviewPageConfig",
    "StorageConfig",
    "TrainingPipelineConfig",
    "UploadPathConfig",
    "endpoint_name",
]
