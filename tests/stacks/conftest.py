"""Session-scoped synth of the app with cdk.json's context (bundling skipped): one jsii warm-up per session."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from app import build_app
from stacks.photo_labeller_stack import PhotoLabellerStack
from tests.stacks.intrinsics import REGION

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_URI = "s3://example-models/llava-run-7/model/"

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


SCOPED_BACKFILL = {
    "photo_labeler.endpoint.model_data_uri": MODEL_URI,
    "photo_labeler.backfill.source_prefix": "archive/",
    "photo_labeler.backfill.inventory_bucket": "photo-labeler-inventory",
}
CANARY = {
    "photo_labeler.training.serve_registered_model": "true",
    "photo_labeler.endpoint.min_capacity": "2",
    "photo_labeler.endpoint.rollout_canary_percent": "25",
    "photo_labeler.endpoint.rollout_canary_wait_seconds": "300",
}
ASYNC_MODE = {
    "photo_labeler.endpoint.model_data_uri": MODEL_URI,
    "photo_labeler.endpoint.mode": "async",
    "photo_labeler.endpoint.min_capacity": "0",
}
SCHEDULED_MODE = {
    "photo_labeler.endpoint.model_data_uri": MODEL_URI,
    "photo_labeler.endpoint.mode": "scheduled",
}
# Scheduled mode's other shape: the windows read the model registry, Spot without the on-demand fallback, and a
# backfill scope beside the upload prefix (the job role reads both).
SCHEDULED_REGISTRY = {
    "photo_labeler.endpoint.mode": "scheduled",
    "photo_labeler.training.serve_registered_model": "true",
    "photo_labeler.scheduled.on_demand_fallback": "false",
    "photo_labeler.backfill.source_prefix": "archive/",
}
# Every config variant whose template differs in kind, by the name of its session fixture below: the deploy-time
# gates run on each (the fixtures' templates, or a fresh synth of the same overrides).
VARIANT_OVERRIDES: dict[str, dict[str, str]] = {
    "no_model": {},
    "with_model": {"photo_labeler.endpoint.model_data_uri": MODEL_URI},
    "registry": {"photo_labeler.training.serve_registered_model": "true"},
    "regional": {
        "photo_labeler.endpoint.model_data_uri": MODEL_URI,
        "photo_labeler.region": "ap-east-1",
        "photo_labeler.account": "123456789012",
    },
    "scoped_backfill": SCOPED_BACKFILL,
    "canary": CANARY,
    "async_mode": ASYNC_MODE,
    "scheduled_mode": SCHEDULED_MODE,
    "scheduled_registry": SCHEDULED_REGISTRY,
}
VARIANTS = tuple(VARIANT_OVERRIDES)


@dataclass(frozen=True)
class Synthesized:
    app: cdk.App
    stack: PhotoLabellerStack
    template: Template

    @property
    def json(self) -> dict[str, Any]:
        return self.template.to_json()

    @property
    def region(self) -> str:
        """The pinned region, or the placeholder one the intrinsics render AWS::Region as."""
        region = self.stack.region
        return REGION if cdk.Token.is_unresolved(region) else region

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return self.template.find_resources(type_name)

    def only(self, type_name: str) -> dict[str, Any]:
        found = self.resources(type_name)
        assert len(found) == 1, f"expected one {type_name}, found {sorted(found)}"
        return next(iter(found.values()))


def cdk_json_context() -> dict[str, Any]:
    return json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]


def synth(overrides: Mapping[str, Any] | None = None) -> Synthesized:
    """Build the app exactly as app.py does, with `-c`-style dotted overrides and bundling skipped."""
    context = {**cdk_json_context(), "aws:cdk:bundling-stacks": [], **(overrides or {})}
    app, stack = build_app(cdk.App(context=context))
    return Synthesized(app=app, stack=stack, template=Template.from_stack(stack))


@pytest.fixture(scope="session")
def synth_app() -> Callable[[Mapping[str, Any] | None], Synthesized]:
    return synth


@pytest.fixture(scope="session")
def no_model() -> Synthesized:
    """cdk.json as committed: environment-agnostic, no model yet."""
    return synth()


@pytest.fixture(scope="session")
def with_model() -> Synthesized:
    """Environment-agnostic, with a model: the full system."""
    return synth(VARIANT_OVERRIDES["with_model"])


@pytest.fixture(scope="session")
def registry() -> Synthesized:
    """Environment-agnostic, the endpoint serving the training pipeline's registry: the pipeline rolls out."""
    return synth(VARIANT_OVERRIDES["registry"])


@pytest.fixture(scope="session")
def regional() -> Synthesized:
    """Pinned to ap-east-1, whose LMI image lives in a non-default ECR account."""
    return synth(VARIANT_OVERRIDES["regional"])


@pytest.fixture(scope="session")
def scoped_backfill() -> Synthesized:
    """A model, and backfills restricted to a source prefix or started from an S3 Inventory manifest."""
    return synth(SCOPED_BACKFILL)


@pytest.fixture(scope="session")
def canary() -> Synthesized:
    """The registry-served endpoint on two instances, rolled out by a canary (the rollout's other branch)."""
    return synth(CANARY)


@pytest.fixture(scope="session")
def async_mode() -> Synthesized:
    """endpoint.mode async with a model, scaling to zero (stacks/serving/async_inference.py,
    stacks/serving/async_scaling.py)."""
    return synth(ASYNC_MODE)


@pytest.fixture(scope="session")
def scheduled_mode() -> Synthesized:
    """endpoint.mode scheduled, a pinned model: no endpoint, Spot labelling windows
    (stacks/labelling/window.py)."""
    return synth(SCHEDULED_MODE)


@pytest.fixture(scope="session")
def scheduled_registry() -> Synthesized:
    """endpoint.mode scheduled reading the model registry per window, no on-demand fallback, a backfill scope."""
    return synth(SCHEDULED_REGISTRY)


@pytest.fixture
def tmp_cdk_out(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "cdk.out"
    out.mkdir()
    yield out
