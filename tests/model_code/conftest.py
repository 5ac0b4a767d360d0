"""A tiny random LLaVA-NeXT served by the local backend on 127.0.0.1 (ephemeral port), once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from classification.contract import Taxonomy

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return Taxonomy.load()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    from training_job.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), taxonomy, profile="compact")


@pytest.fixture(scope="session")
def server(tiny_model: Path) -> Iterator[object]:
    from model_code.local_server import LocalServer

    with LocalServer(tiny_model, port=0, endpoint_name="photo-labeler") as running:
        running.wait_until_ready(timeout=120)
        yield running
