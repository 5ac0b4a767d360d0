"""The synth-time load check: upload + backfill concurrency never exceeds what the endpoint's engines batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import app
from stacks.common import constants
from stacks.config import AppConfig, BackfillConfig, ConfigError
from stacks.serving import serving_properties
from stacks.serving.endpoint_load import check_endpoint_load, queueing_seconds
from stacks.serving.serving_properties import InvalidServingProperties
from tests.stacks.conftest import MODEL_URI, cdk_json_context

BOTH_KEYS = "photo_labeler.upload.max_concurrency + photo_labeler.backfill.max_concurrency"


def test_the_defaults_reach_the_whole_fleet_and_stay_under_the_rollback_latency_alarm_on_one_instance() -> None:
    # Given the default concurrencies, endpoint size and the committed engine batch
    config = AppConfig()
    upload, backfill = config.upload.max_concurrency, BackfillConfig().max_concurrency
    batch = serving_properties.engine_batch_size(serving_properties.load())
    endpoint = config.endpoint
    # Then uploads alone can drive every instance: target tracking adds one per `target` requests in flight
    # (issue 13's sizing: 12 reached only 2 of the 4 instances)
    assert (upload, backfill) == (24, 8)
    assert upload >= endpoint.max_capacity * endpoint.target_concurrent_requests_per_model
    # And they fit the fleet's batches at full scale
    assert upload + backfill <= endpoint.max_capacity * batch
    # And even on the one instance a deployment may start with, the last request waits under the p90 bar the
    # rollout alarm rolls back at (30 s): 32 x 0.674 s = ~22 s, unlike the old 24 + 16 (~27 s)
    # with a quarter of the bar to spare
    bar = endpoint.rollback_p90_model_latency_seconds
    assert queueing_seconds(upload + backfill, 1) < 0.75 * bar
    assert queueing_seconds(24 + 16, 1) > 25


@pytest.mark.parametrize(
    ("upload", "backfill", "instances", "batch"), [(12, 8, 4, 12), (12, 12, 2, 12), (2, 1, 1, 3)]
)
def test_a_sum_within_the_fleets_batches_passes(upload: int, backfill: int, instances: int, batch: int) -> None:
    # Raises nothing: at full scale every request in flight sits in some instance's engine batch
    check_endpoint_load(
        upload_max_concurrency=upload,
        backfill_max_concurrency=backfill,
        max_capacity=instances,
        engine_batch=batch,
    )


def test_a_sum_beyond_the_fleets_batches_fails_naming_both_keys_and_the_arithmetic() -> None:
    with pytest.raises(ConfigError) as caught:
        check_endpoint_load(upload_max_concurrency=12, backfill_max_concurrency=8, max_capacity=1, engine_batch=12)
    assert caught.value.key == BOTH_KEYS
    message = str(caught.value)
    assert "12 + 8 = 20" in message
    assert "endpoint.max_capacity (1) x option.max_rolling_batch_size (12" in message and "= 12" in message


def test_synth_refuses_a_one_instance_endpoint_with_the_default_concurrencies(synth_app) -> None:
    # Given an endpoint capped at one instance (12 requests batched) and the defaults' 20 in flight
    with pytest.raises(ConfigError) as caught:
        synth_app({"photo_labeler.endpoint.model_data_uri": MODEL_URI, "photo_labeler.endpoint.max_capacity": "1"})
    assert caught.value.key == BOTH_KEYS


def test_lowering_the_concurrencies_makes_a_one_instance_endpoint_valid(synth_app) -> None:
    synthesized = synth_app(
        {
            "photo_labeler.endpoint.model_data_uri": MODEL_URI,
            "photo_labeler.endpoint.max_capacity": "1",
            "photo_labeler.upload.max_concurrency": "8",
            "photo_labeler.backfill.max_concurrency": "4",
        }
    )
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 8}}
    )


@pytest.mark.parametrize(
    ("properties", "fragment"),
    [
        ({}, "must be set"),
        ({"option.max_rolling_batch_size": "0"}, "positive integer"),
        ({"option.max_rolling_batch_size": "twelve"}, "positive integer"),
    ],
)
def test_the_engine_batch_must_be_a_positive_integer_in_serving_properties(
    properties: dict[str, str], fragment: str
) -> None:
    with pytest.raises(InvalidServingProperties, match=fragment):
        serving_properties.engine_batch_size(properties)


def test_app_py_reports_a_serving_properties_problem_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a serving.properties without the engine batch, and the CLI's way of passing context
    monkeypatch.setattr(serving_properties, "load", lambda: {"option.dtype": "bf16"})
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps({**cdk_json_context(), "aws:cdk:bundling-stacks": []}))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    # When app.py's entry point runs
    with pytest.raises(SystemExit) as exited:
        app.main()
    # Then it exits 2 with one line naming the file and the key
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Invalid model_code/serving.properties: {constants.SERVING_PROPERTIES_FILE.name}: ")
    assert "option.max_rolling_batch_size must be set" in err and "\n" not in err
