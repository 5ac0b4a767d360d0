"""The config object: cdk.json parses, every invalid value fails naming its key, sections can be added."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import AppConfig, ConfigError
from tests.stacks.conftest import PROJECT_ROOT, cdk_json_context

# Every section of the context object, in cdk.json's order: AppConfig's dataclass-typed fields.
SECTIONS = (
    "storage",
    "endpoint",
    "upload",
    "training",
    "backfill",
    "review",
    "monitoring",
    "async_inference",
    "scheduled",
)


def parse(raw: dict[str, Any] | None = None, **overrides: Any) -> AppConfig:
    return AppConfig.from_context(raw if raw is not None else {}, overrides=overrides)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# The keys a deployer sets (docs/configuration.md): cdk.json shows them even at their defaults. Every other key
# keeps the default declared once on its AppConfig field, and appears in cdk.json only to change it.
USER_KEYS = {
    "account",
    "region",
    "name_prefix",
    "alarm_topic_arn",
    "endpoint.model_data_uri",
    "endpoint.mode",
    "endpoint.min_capacity",
    "endpoint.max_capacity",
    "training.serve_registered_model",
}


def _listed(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name, value in raw.items():
        if not prefix and name in SECTIONS:
            keys.update(_listed(value, f"{name}."))
        else:
            keys[prefix + name] = value
    return keys


def _value(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _repeated_defaults(raw: dict[str, Any]) -> list[str]:
    """Keys other than the user keys whose value is the default."""
    config, defaults = AppConfig.from_context(raw), AppConfig()
    return sorted(key for key in set(_listed(raw)) - USER_KEYS if _value(config, key) == _value(defaults, key))


def test_committed_cdk_json_lists_the_keys_a_user_sets_and_only_changed_defaults() -> None:
    # Given the context committed in cdk.json
    raw = cdk_json_context()["photo_labeler"]
    # When it is parsed
    config = AppConfig.from_context(raw)
    defaults = AppConfig()
    # Then the keys a deployer sets are all shown
    assert USER_KEYS.issubset(_listed(raw))
    # And any other key listed changes its default (a repeated default would drift from the code's)
    assert _repeated_defaults(raw) == []
    # And AppConfig declares exactly these sections (docs/reference/configuration.md documents every key of each)
    assert {name for name in _field_names(AppConfig) if dataclasses.is_dataclass(getattr(config, name))} == set(
        SECTIONS
    )
    for key in USER_KEYS:
        _value(defaults, key)  # a renamed field fails here, naming the key


def test_a_default_repeated_in_cdk_json_is_caught() -> None:
    # Given a cdk.json that repeats a default outside the user keys (the negative control of the test above)
    raw = {**cdk_json_context()["photo_labeler"], "upload": {"batch_size": AppConfig().upload.batch_size}}
    # Then the check above names it
    assert _repeated_defaults(raw) == ["upload.batch_size"]


def test_command_line_overrides_are_typed_like_the_field() -> None:
    # Given `-c photo_labeler.endpoint.max_capacity=8` etc. (the CLI passes strings)
    config = parse(
        **{
            "photo_labeler.endpoint.max_capacity": "8",
            "photo_labeler.endpoint.model_data_uri": "s3://models/run-1/model/",
            "photo_labeler.upload.confidence_threshold": "0.65",
            "unrelated.key": "ignored",
        }
    )
    # Then each value has the field's type
    assert config.endpoint.max_capacity == 8
    assert config.endpoint.model_data_uri == "s3://models/run-1/model/"
    assert config.upload.confidence_threshold == 0.65


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"endpoint": {"min_capacity": 0}}, "photo_labeler.endpoint.min_capacity", ">= 1"),
        (
            {"endpoint": {"min_capacity": 3, "max_capacity": 2}},
            "photo_labeler.endpoint.max_capacity",
            "min_capacity",
        ),
        (
            {"endpoint": {"scale_in_cooldown_seconds": 60, "scale_out_cooldown_seconds": 60}},
            "photo_labeler.endpoint.scale_in_cooldown_seconds",
            "longer than",
        ),
        (
            {"endpoint": {"model_data_uri": "s3://bucket/model.tar.gz"}},
            "photo_labeler.endpoint.model_data_uri",
            "prefix",
        ),
        ({"endpoint": {"model_data_uri": "https://x/y/"}}, "photo_labeler.endpoint.model_data_uri", "s3://"),
        ({"endpoint": {"instance_type": "g5.xlarge"}}, "photo_labeler.endpoint.instance_type", "ml.g5.xlarge"),
        ({"endpoint": {"lmi_image_version": "0.1.0"}}, "photo_labeler.endpoint.lmi_image_version", "0.38.0"),
        ({"endpoint": {"min_capacity": "1"}}, "photo_labeler.endpoint.min_capacity", "integer"),
        (
            {"endpoint": {"container_startup_timeout_seconds": 7200}},
            "photo_labeler.endpoint.container_startup_timeout_seconds",
            "3600",
        ),
        ({"endpoint": {"min_capacity": True}}, "photo_labeler.endpoint.min_capacity", "integer"),
        ({"endpoint": {"max_capcity": 2}}, "photo_labeler.endpoint.max_capcity", "unknown key"),
        ({"endpont": {}}, "photo_labeler.endpont", "unknown key"),
        ({"storage": {"upload_prefix": "uploads"}}, "photo_labeler.storage.upload_prefix", "ending in '/'"),
        ({"storage": {"upload_prefix": "/uploads/"}}, "photo_labeler.storage.upload_prefix", "leading"),
        (
            {"upload": {"hotel_id_pattern": "^uploads/([^/]+)/"}},
            "photo_labeler.upload.hotel_id_pattern",
            "hotel_id",
        ),
        (
            {"upload": {"hotel_id_pattern": "^uploads/(?P<hotel_id"}},
            "photo_labeler.upload.hotel_id_pattern",
            "regular",
        ),
        (
            {"upload": {"confidence_threshold": 1.5}},
            "photo_labeler.upload.confidence_threshold",
            "between 0 and 1",
        ),
        ({"upload": {"batch_size": 11}}, "photo_labeler.upload.batch_size", "1..10"),
        ({"upload": {"max_concurrency": 1}}, "photo_labeler.upload.max_concurrency", "2..1000"),
        ({"upload": {"max_receive_count": 0}}, "photo_labeler.upload.max_receive_count", "1..1000"),
        ({"upload": {"function_timeout_seconds": 901}}, "photo_labeler.upload.function_timeout_seconds", "900"),
        # The former default: one record's worst case (~130-140 s) did not fit, so a slow endpoint timed out
        # whole batches, labelled messages included.
        (
            {"upload": {"function_timeout_seconds": 120}},
            "photo_labeler.upload.function_timeout_seconds",
            "one worst-case record (140 s",
        ),
        (
            {"upload": {"function_timeout_seconds": 150, "batch_size": 10, "max_receive_count": 9}},
            "photo_labeler.upload.max_receive_count",
            "batch_size 10 and function_timeout_seconds 150 (1 worst-case record(s)",
        ),
        ({"region": "us-east-9x"}, "photo_labeler.region", "region"),
        ({"region": "us-isob-west-9"}, "photo_labeler.region", "not published"),
        ({"account": "12345"}, "photo_labeler.account", "12 digits"),
        ({"name_prefix": "Photo_Labeler"}, "photo_labeler.name_prefix", "a-z"),
        ({"metrics_namespace": "AWS/Lambda"}, "photo_labeler.metrics_namespace", "custom"),
        ({"alarm_topic_arn": "arn:aws:sqs:us-east-1:123456789012:q"}, "photo_labeler.alarm_topic_arn", "SNS"),
        ({"taxonomy_file": "does/not/exist.json"}, "photo_labeler.taxonomy_file", "cannot read"),
        ({"taxonomy_file": "/etc/passwd"}, "photo_labeler.taxonomy_file", "inside the project"),
        ({"storage": []}, "photo_labeler.storage", "object"),
        # An object-typed key given a string once crashed with an AttributeError instead of naming the key
        ({"training": {"hyperparameters": "epochs=3"}}, "photo_labeler.training.hyperparameters", "an object"),
        ({"endpoint": {"mode": "batch"}}, "photo_labeler.endpoint.mode", "'scheduled'"),
        ({"scheduled": {"schedule": "every 6 hours"}}, "photo_labeler.scheduled.schedule", "rate(...) or cron"),
        ({"scheduled": {"schedule": "rate(1 hours)"}}, "photo_labeler.scheduled.schedule", "singular"),
        ({"scheduled": {"schedule": "rate(6 hour)"}}, "photo_labeler.scheduled.schedule", "plural"),
        (
            {"scheduled": {"schedule": "cron(0 2 * * ? *)"}},
            "photo_labeler.scheduled.window_interval_hours",
            "cron() schedule",
        ),
        ({"scheduled": {"max_hosts": 0}}, "photo_labeler.scheduled.max_hosts", "1..100"),
        (
            {"scheduled": {"target_job_minutes": 90, "max_job_minutes": 60}},
            "photo_labeler.scheduled.max_job_minutes",
            "target_job_minutes (90)",
        ),
        (
            {"scheduled": {"max_job_minutes": 40320, "spot_wait_minutes": 1}},
            "photo_labeler.scheduled.spot_wait_minutes",
            "MaxWaitTimeInSeconds",
        ),
        ({"scheduled": {"use_spot": False}}, "photo_labeler.scheduled.on_demand_fallback", "use_spot"),
        ({"scheduled": {"instance_type": "g5.xlarge"}}, "photo_labeler.scheduled.instance_type", "ml.g5.xlarge"),
    ],
)
def test_invalid_values_fail_with_a_message_naming_the_key(raw: dict[str, Any], key: str, fragment: str) -> None:
    # When an invalid config is parsed
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    # Then the error names the full dotted key and says what is wrong
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert fragment in str(caught.value)


@pytest.mark.parametrize("region", [None, "eu-west-1"])
def test_a_cloudfront_web_acl_needs_the_stack_pinned_to_us_east_1(region: str | None) -> None:
    # AWS WAF's CreateWebACL: "To work with CloudFront, you must also specify the Region US East (N. Virginia)".
    # Unpinned, the template could be deployed anywhere and the first deploy would fail late and roll back.
    raw: dict[str, Any] = {"review": {"waf": True}}
    if region is not None:
        raw |= {"region": region, "account": "123456789012"}
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert caught.value.key == "photo_labeler.review.waf"
    assert f"this stack's region is {region or 'not pinned'}" in str(caught.value)
    assert "set photo_labeler.region (and account) to us-east-1" in str(caught.value)
    assert "review.web_acl_arn" in str(caught.value)
    # Pinned to us-east-1, or with the page off, the same switch is fine
    assert parse({**raw, "region": "us-east-1", "account": "123456789012"}).review.waf
    assert not parse({"review": {"waf": True, "enabled": False}}).review.enabled


def test_a_taxonomy_the_contract_rejects_fails_synth(tmp_path: Path) -> None:
    # Given a taxonomy file inside the project with a duplicate label
    bad = PROJECT_ROOT / "tests" / "stacks" / f"_bad_taxonomy_{os.getpid()}.json"
    bad.write_text(json.dumps({"labels": ["Pool", "pool"]}))
    try:
        with pytest.raises(ConfigError) as caught:
            parse({"taxonomy_file": str(bad.relative_to(PROJECT_ROOT))})
    finally:
        bad.unlink()
    assert caught.value.key == "photo_labeler.taxonomy_file"
    assert "twice" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"training": {"instance_count": 0}}, "photo_labeler.training.instance_count", "1..max_instance_count"),
        ({"training": {"epochs": 3}}, "photo_labeler.training.epochs", "unknown key"),
        ({"backfill": {"items_per_batch": 0}}, "photo_labeler.backfill.items_per_batch", "1..1000"),
        ({"review": {"presigned_url_seconds": 5}}, "photo_labeler.review.presigned_url_seconds", "60..3600"),
        ({"monitoring": {"stall_alarm_minutes": 2}}, "photo_labeler.monitoring.stall_alarm_minutes", "5..1440"),
        ({"endpoint": {"rollout_canary_percent": 60}}, "photo_labeler.endpoint.rollout_canary_percent", "1..50"),
        ({"endpoint": {"rollout_timeout_seconds": 60}}, "photo_labeler.endpoint.rollout_timeout_seconds", "600"),
        # The rollout keys moved from `training` to `endpoint` (they drive every endpoint deploy): an old
        # cdk.json fails naming the key instead of silently losing the setting.
        ({"training": {"rollout_canary_percent": 25}}, "photo_labeler.training.rollout_canary_percent", "unknown"),
    ],
)
def test_every_section_is_parsed_without_importing_its_construct(
    raw: dict[str, Any], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert fragment in str(caught.value)


def test_a_tool_reads_the_whole_config_without_importing_the_stack_or_any_construct() -> None:
    # Given a fresh interpreter that imports only stacks.config (what a CLI under tools/ would do)
    script = (
        "import json, sys\n"
        "from stacks.config import AppConfig\n"
        "raw = json.load(open('cdk.json'))['context']['photo_labeler']\n"
        "config = AppConfig.from_context(raw, overrides={'photo_labeler.backfill.max_concurrency': '3'})\n"
        "print(json.dumps({'backfill': config.backfill.max_concurrency, 'training': config.training.instance_type,"
        " 'review': config.review.enabled, 'monitoring': config.monitoring.stall_alarm_minutes,"
        " 'canary': config.endpoint.rollout_canary_percent,"
        " 'modules': sorted(m for m in sys.modules if m.startswith('stacks.'))}))\n"
    )
    # When it reads the committed cdk.json with an override
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    read = json.loads(result.stdout.strip().splitlines()[-1])
    # Then every section is there, typed, with the override applied
    assert {k: v for k, v in read.items() if k != "modules"} == {
        "backfill": 3,
        "training": "ml.p5.48xlarge",
        "review": True,
        "monitoring": 15,
        "canary": 0,
    }
    # And no construct module was imported to get there (no registry filled by imports)
    constructs = {
        "stacks.photo_labeller_stack",
        "stacks.labelling.backfill",
        "stacks.training_pipeline",
        "stacks.monitoring.alarms",
        "stacks.review.page",
        "stacks.review.parts",
        "stacks.labelling.upload_path",
        "stacks.serving.inference_endpoint",
        "stacks.storage.model_store",
        "stacks.serving.rollout",
    }
    assert constructs.isdisjoint(read["modules"]), read["modules"]


@pytest.mark.slow
def test_app_py_reports_a_config_error_in_one_line_and_exits_2(tmp_path: Path) -> None:
    # Given the CLI's way of passing context to the app, with one bad value
    context = {**cdk_json_context(), "photo_labeler.endpoint.min_capacity": "0", "aws:cdk:bundling-stacks": []}
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    # When app.py runs
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    # Then it exits 2 with a single line naming the key, and no traceback
    assert result.returncode == 2, result.stderr
    assert "Invalid configuration: photo_labeler.endpoint.min_capacity: must be >= 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_scheduled_windows_derive_their_alarm_cap_and_catch_up_from_the_schedule() -> None:
    # Given the default 6-hourly schedule and a daily cron one
    default = parse({"endpoint": {"mode": "scheduled"}}).scheduled
    nightly = parse({"scheduled": {"schedule": "cron(0 2 * * ? *)", "window_interval_hours": 24}}).scheduled
    # Then a photo alarms after two missed windows, a missed window is caught up one backlog check later,
    assert (default.window_hours, default.pending_alarm_seconds) == (6, 12 * 3600)
    assert (nightly.window_hours, nightly.pending_alarm_seconds) == (24, 48 * 3600)
    assert default.catch_up_seconds == 6 * 3600 + 15 * 60
    # one window takes what the hosts label in 80 % of a job's runtime, and Spot may wait an hour beyond it
    assert default.max_photos_per_window == int(4 * 5300 * 5.5 * 0.8)
    assert default.max_wait_seconds == (330 + 60) * 60
    assert parse({"scheduled": {"schedule": "rate(30 minutes)"}}).scheduled.window_hours == 0.5
