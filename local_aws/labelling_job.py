"""The labelling job of endpoint.mode scheduled played on this machine, as SageMaker would run it.

- `build_bundle`: the job's code asset, built by the CDK asset's own local bundler (stacks/labelling/job_code.py:
  pinned boto3 wheels + sources) and zipped, as the `code` channel receives it.
- `LocalJob`: a SageMaker-like `/opt/ml` tree in a folder (the code channel holding the zip, the manifest channel,
  the checkpoint directory), and the container's entry point (`ContainerEntrypoint`, stacks.labelling.job_code
  .BOOTSTRAP) run by the serving venv's Python (vLLM's CPU build; no boto3 of its own, so the bundle's is the one
  used) with a one-host `SM_*` environment, its AWS clients pointed at the local emulation.

Differences from SageMaker, on purpose: the model channel is the model directory itself (no copy); one host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from local_aws.emulation import CREDENTIALS, REGION
from local_aws.training import REPO_ROOT

SERVE_PYTHON = REPO_ROOT / ".venv-serve" / "bin" / "python"
HOST = "algo-1"
KV_CACHE_GIB = 1  # VLLM_CPU_KVCACHE_SPACE: as model_code/vllm_server.py gives the local server


def build_bundle(directory: Path, taxonomy_file: Path | None = None) -> Path:
    """The job's code zip under `directory` (bundled as the CDK asset is); returns the zip's path."""
    from stacks.common.constants import CLASSIFICATION_DIR
    from stacks.labelling.job_code import bundler

    unpacked = directory / "bundle"
    unpacked.mkdir(parents=True, exist_ok=True)
    bundler(taxonomy_file or CLASSIFICATION_DIR / "taxonomy.json").try_bundle(str(unpacked))
    archive = directory / "code.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as packed:
        for path in sorted(unpacked.rglob("*")):
            if path.is_file():
                packed.write(path, path.relative_to(unpacked).as_posix())
    return archive


@dataclass
class LocalJob:
    """One host of a labelling job: `root` plays /opt/ml (LABELLING_ROOT)."""

    root: Path
    bundle: Path  # the code zip (build_bundle)
    model_dir: Path

    @property
    def manifest_dir(self) -> Path:
        return self.root / "input" / "data" / "manifest"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    def put_manifest(self, shards: Mapping[str, str]) -> None:
        """The manifest channel's files (name -> JSON Lines), replacing what it held; the checkpoint stays."""
        shutil.rmtree(self.manifest_dir, ignore_errors=True)
        self.manifest_dir.mkdir(parents=True)
        for name, text in shards.items():
            (self.manifest_dir / name).write_text(text, encoding="utf-8")
        code = self.root / "input" / "data" / "code"
        code.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.bundle, code / self.bundle.name)

    def command(self, *arguments: str) -> list[str]:
        from stacks.labelling.job_code import ENTRYPOINT

        return [str(SERVE_PYTHON), *ENTRYPOINT[1:], *arguments]

    def environment(self, labeller: Mapping[str, str], *, aws_endpoint_url: str) -> dict[str, str]:
        """The container's environment: the window's variables (the labeller's contract) plus what SageMaker and
        the local emulation provide."""
        env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "SM_"))}
        for name in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"):  # only the bundle and the serving venv
            env.pop(name, None)
        env.update(labeller)
        env.update(
            LABELLING_ROOT=str(self.root),
            SM_CURRENT_HOST=HOST,
            SM_HOSTS=json.dumps([HOST]),
            SM_CHANNEL_MANIFEST=str(self.manifest_dir),
            SM_CHANNEL_MODEL=str(self.model_dir),
            TRAINING_JOB_NAME="local-labelling-job",
            AWS_ENDPOINT_URL=aws_endpoint_url,
            AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            HF_HUB_OFFLINE="1",
            VLLM_CPU_KVCACHE_SPACE=str(KV_CACHE_GIB),
            VLLM_NO_USAGE_STATS="1",
            TOKENIZERS_PARALLELISM="false",
        )
        return env

    def start(
        self, labeller: Mapping[str, str], *, aws_endpoint_url: str, log: IO[str], arguments: tuple[str, ...] = ()
    ) -> subprocess.Popen[str]:
        """Start the container's entry point (its own process group, so `kill` ends the engine's workers too)."""
        return subprocess.Popen(
            self.command(*arguments),
            cwd=self.root,
            env=self.environment(labeller, aws_endpoint_url=aws_endpoint_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(
        self,
        labeller: Mapping[str, str],
        *,
        aws_endpoint_url: str,
        log: IO[str],
        arguments: tuple[str, ...] = (),
        timeout: float = 1800,
    ) -> int:
        process = self.start(labeller, aws_endpoint_url=aws_endpoint_url, log=log, arguments=arguments)
        try:
            return process.wait(timeout)
        except BaseException:
            kill(process)
            raise

    def finished_batches(self) -> int:
        return len(list((self.checkpoint_dir / "done").glob("*.json")))


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process group: nothing survives, as on a reclaimed Spot instance."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


__all__ = ["HOST", "SERVE_PYTHON", "LocalJob", "build_bundle", "kill"]
