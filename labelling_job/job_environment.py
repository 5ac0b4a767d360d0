"""Where the labelling job finds its inputs: the manifest and model channels, the hosts, the checkpoint directory.

The LMI image has no SageMaker training toolkit, so nothing sets the `SM_*` variables on AWS: the platform writes
`/opt/ml/input/config/resourceconfig.json` (`current_host`, `hosts`) and copies each channel to
`/opt/ml/input/data/<channel>` (AWS, "How Amazon SageMaker AI Provides Training Information":
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html). A local run
sets `SM_CURRENT_HOST`, `SM_HOSTS`, `SM_CHANNEL_MANIFEST`, `SM_CHANNEL_MODEL` as the toolkit would, and they win.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobEnvironment:
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
        environment = cls(
            current_host=current,
            hosts=tuple(hosts),
            manifest_dir=Path(environ.get("SM_CHANNEL_MANIFEST") or root / "input" / "data" / MANIFEST_CHANNEL),
            model_dir=Path(environ.get("SM_CHANNEL_MODEL") or root / "input" / "data" / MODEL_CHANNEL),
            checkpoint_dir=Path(environ.get("CHECKPOINT_DIR") or root / CHECKPOINT_DIR),
            job_name=environ.get("TRAINING_JOB_NAME", "local"),
        )
        if not environment.manifest_dir.is_dir():
            raise JobConfigError(f"manifest channel {environment.manifest_dir} is not a directory")
        if not (environment.model_dir / "config.json").is_file():
            raise JobConfigError(f"model channel {environment.model_dir} holds no saved model (config.json)")
        return environment

    def manifest_files(self) -> list[Path]:
        """This host's shards: ShardedByS3Key already gave each host its own files; sorted for a stable order."""
        return sorted(path for path in self.manifest_dir.rglob("*.jsonl") if path.is_file())
