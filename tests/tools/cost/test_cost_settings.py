"""The cost model reads the deployed configuration the way the app does, without importing the CDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.cost import settings as cost_settings
from tools.cost.settings import ScheduledSettings, Settings, SettingsError, from_context, rate_hours

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def test_committed_cdk_json_reads_the_same_values_as_the_apps_config() -> None:
    # Given the app's own reader (it imports the CDK) on cdk.json
    from stacks.config import AppConfig

    context = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]["photo_labeler"]
    app = AppConfig.from_context(context)
    backfill = app.backfill
    # When the cost model reads it
    ours = cost_settings.load()
    # Then every value it uses is the app's
    assert ours == Settings(
        instance_type=app.endpoint.instance_type,
        min_capacity=app.endpoint.min_capacity,
        max_capacity=app.endpoint.max_capacity,
        target_in_flight=app.endpoint.target_concurrent_requests_per_model,
        scale_out_cooldown_seconds=app.endpoint.scale_out_cooldown_seconds,
        scale_in_cooldown_seconds=app.endpoint.scale_in_cooldown_seconds,
        upload_batch_size=app.upload.batch_size,
        upload_max_concurrency=app.upload.max_concurrency,
        upload_memory_mb=app.upload.function_memory_mb,
        backfill_items_per_batch=backfill.items_per_batch,
        backfill_max_concurrency=backfill.max_concurrency,
        backfill_memory_mb=backfill.function_memory_mb,
        engine_batch=12,
        labels=len(app.taxonomy.labels),
    )
    # And an empty context gives the same defaults as the app's dataclasses
    assert from_context({}) == Settings()


def test_the_cost_package_does_not_import_the_cdk() -> None:
    code = "import sys, tools.cost.cli, tools.cost_estimate; print('aws_cdk' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"endpoint": {"min_capacity": 0}}, "photo_labeler.endpoint.min_capacity: must be >= 1, got 0"),
        ({"endpoint": {"min_capacity": 3, "max_capacity": 2}}, "photo_labeler.endpoint.max_capacity: must be >="),
        ({"upload": {"max_concurrency": "12"}}, "photo_labeler.upload.max_concurrency: must be an integer"),
        ({"backfill": {"items_per_batch": 2.5}}, "photo_labeler.backfill.items_per_batch: must be an integer"),
        ({"upload": []}, "photo_labeler.upload: must be an object"),
    ],
)
def test_bad_settings_name_their_key(context: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as error:
        from_context(context)
    assert message in str(error.value)


def test_an_unreadable_cdk_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text("{not json")
    with pytest.raises(SettingsError, match="cannot read"):
        cost_settings.load(tmp_path / "cdk.json")


def test_scheduled_settings_use_the_designs_key_names_and_defaults() -> None:
    # docs/scheduled-mode.md: photo_labeler.scheduled; until AppConfig has the section these are the defaults
    scheduled = ScheduledSettings()
    assert scheduled.interval_hours == 6.0  # rate(6 hours)
    assert scheduled.window_cap == pytest.approx(4 * 5_300 * 0.8 * 330 / 60)
    assert ScheduledSettings(schedule="rate(1 day)").interval_hours == 24.0
    assert ScheduledSettings(schedule="cron(0 2 * * ? *)", window_interval_hours=24).interval_hours == 24.0
    with pytest.raises(SettingsError, match="window_interval_hours: required with a cron"):
        _ = ScheduledSettings(schedule="cron(0 2 * * ? *)").interval_hours
    assert (rate_hours("rate(30 minutes)"), rate_hours("rate(2 days)")) == (0.5, 48.0)


def test_scheduled_settings_follow_the_apps_config_section() -> None:
    from stacks.config import AppConfig

    section = AppConfig().scheduled
    ours = Settings.from_config(AppConfig()).scheduled
    # Every setting the cost model prices is one the app deploys, with the same value.
    for name in ScheduledSettings.__dataclass_fields__:
        assert getattr(ours, name) == getattr(section, name), name
