"""The labelling job's environment, read once at its start: where it finds its inputs (the manifest and model
channels, the hosts, the checkpoint directory) and the labeller's settings.

The LMI image has no SageMaker training toolkit, so nothing sets the `SM_*` variables on AWS: the platform writes
`/opt/ml/input/config/resourceconfig.json` (`current_host`, `hosts`) and copies each channel to
`/opt/ml/input/data/<channel>` (AWS, "How Amazon SageMaker AI Provides Training Information":
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html). A local run
sets `SM_CURRENT_HOST`, `SM_HOSTS`, `SM_CHANNEL_MANIFEST`, `SM_CHANNEL_MODEL` as the toolkit would, and they win.
The labeller's settings are the labeller functions' contract in scheduled mode (TABLE_NAME, MODEL_ID,
CONFIDENCE_THRESHOLD, ...: classification/labeller_environment.py), as the window's job state writes them. With the
contract, this is the only module of the job that reads the process environment (a test holds it:
tests/classification/test_labeller_environment.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from classification.labeller_environment import ENDPOINT_MODE, SCHEDULED, ConfigError, LabellerEnvironment

DEFAULT_ROOT = Path("/opt/ml")
# Overrides /opt/ml for the bootstrap and this module (tests unpack a bundle under a temporary root).
ROOT_VARIABLE = "LABELLING_ROOT"
MANIFEST_CHANNEL = "manifest"
MODEL_CHANNEL = "model"
CODE_CHANNEL = "code"
CHECKPOINT_DIR = "checkpoints"  # CheckpointConfig.LocalPath's default, /opt/ml/checkpoints


class JobConfigError(ValueError):
    """The job cannot find what it needs; the message names the path or variable."""


@dataclass(frozen=True)
class JobEnvironment:
    current_host: str
    hosts: tuple[str, ...]
    manifest_dir: Path
    model_dir: Path
    checkpoint_dir: Path
    job_name: str
    labeller: LabellerEnvironment  # ENDPOINT_MODE=scheduled

    @classmethod
    def from_process(cls) -> JobEnvironment:
        return cls.from_environ(os.environ)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobEnvironment:
        """JobConfigError names a missing input, ConfigError a labeller variable that is missing or malformed."""
        root = Path(environ.get(ROOT_VARIABLE) or DEFAULT_ROOT)
        if "SM_CURRENT_HOST" in environ:
            current = environ["SM_CURRENT_HOST"]
            try:
                hosts = json.loads(environ.get("SM_HOSTS") or json.dumps([current]))
            except json.JSONDecodeError as error:
                raise JobConfigError(f"SM_HOSTS must be a JSON list of host names: {error}") from error
        else:
            config = root / "input" / "config" / "resourceconfig.json"
            try:
                resource = json.loads(config.read_text(encoding="utf-8"))
                current, hosts = resource["current_host"], resource["hosts"]
            except (OSError, ValueError, KeyError) as error:
                raise JobConfigError(f"{config} unreadable and SM_CURRENT_HOST unset: {error}") from error
        if not isinstance(hosts, list) or current not in hosts:
            raise JobConfigError(f"the current host {current!r} is not among the hosts {hosts!r}")
        manifest_dir = Path(environ.get("SM_CHANNEL_MANIFEST") or root / "input" / "data" / MANIFEST_CHANNEL)
        model_dir = Path(environ.get("SM_CHANNEL_MODEL") or root / "input" / "data" / MODEL_CHANNEL)
        if not manifest_dir.is_dir():
            raise JobConfigError(f"manifest channel {manifest_dir} is not a directory")
        if not (model_dir / "config.json").is_file():
            raise JobConfigError(f"model channel {model_dir} holds no saved model (config.json)")
        return cls(
            current_host=current,
            hosts=tuple(hosts),
            manifest_dir=manifest_dir,
            model_dir=model_dir,
            checkpoint_dir=Path(environ.get("CHECKPOINT_DIR") or root / CHECKPOINT_DIR),
            job_name=environ.get("TRAINING_JOB_NAME", "local"),
            labeller=_labeller(environ),
        )

    def manifest_files(self) -> list[Path]:
        """This host's shards: ShardedByS3Key already gave each host its own files; sorted for a stable order."""
        return sorted(path for path in self.manifest_dir.rglob("*.jsonl") if path.is_file())


def _labeller(environ: Mapping[str, str]) -> LabellerEnvironment:
    labeller = LabellerEnvironment.from_environment(environ)
    if labeller.endpoint_mode != SCHEDULED:
        raise ConfigError(f"the labelling job needs {ENDPOINT_MODE}={SCHEDULED}, got {labeller.endpoint_mode}")
    return labeller
