"""SageMaker entry point: train on every GPU of every host with accelerate + DeepSpeed ZeRO-3, then evaluate.

The training asset is the repository layout (`training_job/` and `classification/` side by side); SageMaker runs
this from the asset root as

    python training_job/launch.py [--hyperparameter value ...]

(hyper-parameters `sagemaker_program=training_job/launch.py`, `sagemaker_submit_directory=<asset>`). Everything
about the cluster comes from the SageMaker environment, never from fixed /opt/ml paths:

| variable | used for |
|---|---|
| `SM_NUM_GPUS` | processes per host (0, or unset without CUDA: one CPU process, still under DeepSpeed) |
| `SM_HOSTS`, `SM_CURRENT_HOST` | number of machines, this machine's rank, the rendezvous host (the first) |
| `SM_CHANNEL_TRAIN` | the DatasetDict written by `training_job.build_dataset` |
| `SM_CHANNEL_MODEL` | optional: base model files (else `model_name_or_path` from the config, e.g. the Hub) |
| `SM_CHANNEL_SERVED` | optional: the model the endpoint serves; the evaluation answers the same photos with it |
| `SM_MODEL_DIR` | the servable model; evaluation goes to its `evaluation/` folder |
| `SM_OUTPUT_DATA_DIR` | fallback for checkpoints when `SM_MODEL_DIR` is unset |

Launcher options (SageMaker passes hyper-parameters as `--name value`): `--train_config` (default
training_job/configs/sft_llava_next.yaml), `--checkpoint_dir` (default: `checkpoints` beside SM_MODEL_DIR,
i.e. SageMaker's default CheckpointConfig.LocalPath, so spot restarts resume), `--evaluate true|false`,
`--min_accuracy` (fail the job when the constrained, production-path accuracy is below it),
`--confidence_threshold` (the evaluation's NEEDS_REVIEW threshold; default: production's, classification.contract),
`--eval_batch_size`, `--preflight true|false` (default true: run `training_job.preflight` on the base model and the
dataset before accelerate starts; a wrong chat template or a dataset that renders without an answer fails the
job in seconds), `--nccl_debug LEVEL` (NCCL_DEBUG for the training processes, e.g. INFO on the first multi-host
run: the log then says which network NCCL chose). Any other `--name value` goes to training_job.train (e.g.
`--num_train_epochs 3 --image_token_profile compact`).

Multi-host: SageMaker's training toolkit runs this script as a plain process, so the network settings its torchrun
runner would make (`multi_host_environment`) are made here when SM_HOSTS has more than one host: NCCL over the
container's interface (SM_NETWORK_INTERFACE_NAME), EFA through libfabric on the instance types the toolkit lists,
device RDMA where it lists it. A variable already set in the job's environment is left as it is.

DeepSpeed: the accelerate config uses it, but it is not in training_job/requirements.txt because its sdist needs
`pip install --no-build-isolation` (its setup imports torch), which a requirements file cannot say. So when the
accelerate config's `distributed_type` is DEEPSPEED, the launcher first checks `import deepspeed` and, if that
fails, runs `python -m pip install --no-build-isolation deepspeed==DEEPSPEED_VERSION` (PyPI must be reachable from
the training job); an importable DeepSpeed of another version (a DLC's own build) is logged and kept.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "training_job" / "configs"
RENDEZVOUS_PORT = 29500  # any free port; the same on every host
DEEPSPEED_VERSION = "0.19.8"  # the Makefile's pin; installed at launch (see the module docstring)
EXIT_DEEPSPEED_MISSING = 2
# What the SageMaker training toolkit's torchrun runner sets (aws/sagemaker-training-toolkit v5.1.0, commit
# 3383937: src/sagemaker_training/torch_distributed.py TorchDistributedRunner._setup, and the instance lists
# SM_EFA_NCCL_INSTANCES / SM_EFA_RDMA_INSTANCES of src/sagemaker_training/__init__.py, copied as they are there).
EFA_NCCL_INSTANCES = frozenset(
    {
        "ml.g4dn.8xlarge",
        "ml.g4dn.12xlarge",
        "ml.g5.48xlarge",
        "ml.p3dn.24xlarge",
        "ml.p4d.24xlarge",
        "ml.p4de.24xlarge",
        "ml.p5.48xlarge",
        "ml.trn1.32xlarge",
        "ml.p6e-gb200.36xlarge",
    }
)
EFA_RDMA_INSTANCES = frozenset(
    {"ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.trn1.32xlarge", "ml.p6e-gb200.36xlarge"}
)
DEFAULT_NETWORK_INTERFACE = "eth0"  # the toolkit's default when resourceconfig.json names none
NCCL_DEBUG_LEVELS = ("VERSION", "WARN", "INFO", "TRACE")


@dataclass(frozen=True)
class Cluster:
    hosts: list[str]
    current_host: str
    gpus_per_host: int

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def processes(self) -> int:
        return len(self.hosts) * max(self.gpus_per_host, 1)


def cluster_from_env(env: Mapping[str, str]) -> Cluster:
    hosts = json.loads(env.get("SM_HOSTS", "[]")) or ["localhost"]
    current = env.get("SM_CURRENT_HOST", hosts[0])
    if current not in hosts:
        raise ValueError(f"SM_CURRENT_HOST {current!r} is not one of SM_HOSTS {hosts}")
    gpus = int(env.get("SM_NUM_GPUS") or _local_gpu_count())
    return Cluster(hosts=hosts, current_host=current, gpus_per_host=gpus)


def _local_gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is in every training image
        return 0


def multi_host_environment(cluster: Cluster, env: Mapping[str, str]) -> dict[str, str]:
    """The toolkit's torchrun network settings for a cluster of more than one host, minus those already set."""
    if len(cluster.hosts) < 2:
        return {}
    instance_type = env.get("SM_CURRENT_INSTANCE_TYPE", "")
    settings = {
        "NCCL_SOCKET_IFNAME": env.get("SM_NETWORK_INTERFACE_NAME") or DEFAULT_NETWORK_INTERFACE,
        # The toolkit's reason: EFA may deliver out of order, which NCCL's simple protocol tolerates.
        "NCCL_PROTO": "simple",
    }
    if instance_type in EFA_NCCL_INSTANCES:
        settings["FI_PROVIDER"] = "efa"
    if instance_type in EFA_RDMA_INSTANCES:
        settings |= {"FI_EFA_USE_DEVICE_RDMA": "1", "RDMAV_FORK_SAFE": "1"}
    return {name: value for name, value in settings.items() if name not in env}


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ValueError(f"environment variable {name} is not set (SageMaker sets it; set it by hand locally)")
    return value


def installed_deepspeed() -> str | None:
    """The version of the importable `deepspeed` package, or None when it cannot be imported."""
    try:
        importlib.import_module("deepspeed")
    except Exception:
        # Any failure (missing CUDA libraries, a half-built op) leaves it as unusable as no install at all.
        return None
    try:
        return importlib.metadata.version("deepspeed")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _run(command: Sequence[str]) -> int:
    return subprocess.run(list(command), check=False).returncode


def uses_deepspeed(accelerate_config: Path) -> bool:
    """Whether the accelerate config file asks for DeepSpeed (`distributed_type: DEEPSPEED`)."""
    import yaml  # accelerate's own dependency, so it is on every training image that can launch

    config = yaml.safe_load(accelerate_config.read_text(encoding="utf-8")) or {}
    return str(config.get("distributed_type", "")).upper() == "DEEPSPEED"


def ensure_deepspeed(
    *,
    probe: Callable[[], str | None] = installed_deepspeed,
    run: Callable[[Sequence[str]], int] = _run,
    python: str = sys.executable,
) -> int:
    """Make `import deepspeed` work before accelerate needs it; 0 when it does, else an exit code."""
    version = probe()
    if version is not None:
        if version != DEEPSPEED_VERSION:
            print(f"deepspeed {version} is installed (pinned {DEEPSPEED_VERSION}): using it as is", flush=True)
        else:
            print(f"deepspeed {version} is installed", flush=True)
        return 0
    command = [python, "-m", "pip", "install", "--no-build-isolation", f"deepspeed=={DEEPSPEED_VERSION}"]
    # Build isolation would build DeepSpeed's sdist without torch, which its setup imports.
    print(f"deepspeed is not importable: installing it\n+ {shlex.join(command)}", flush=True)
    code = run(command)
    if code != 0:
        print(
            f"error: installing deepspeed=={DEEPSPEED_VERSION} failed (exit code {code}); the training job needs "
            "PyPI access (no network isolation, a VPC with a NAT gateway) or an image that ships DeepSpeed",
            file=sys.stderr,
        )
        return EXIT_DEEPSPEED_MISSING
    importlib.invalidate_caches()  # the new package must be visible to the probe in this process
    version = probe()
    if version is None:
        print(f"error: deepspeed=={DEEPSPEED_VERSION} installed but cannot be imported", file=sys.stderr)
        return EXIT_DEEPSPEED_MISSING
    print(f"deepspeed {version} installed", flush=True)
    return 0


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="training_job/launch.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_config", type=Path, default=CONFIGS / "sft_llava_next.yaml")
    parser.add_argument("--accelerate_config", type=Path, default=CONFIGS / "accelerate_zero3.yaml")
    parser.add_argument("--deepspeed_config", type=Path, default=CONFIGS / "ds_zero3.json")
    parser.add_argument("--checkpoint_dir", type=Path, default=None)
    parser.add_argument("--evaluate", type=_boolean, default=True)
    parser.add_argument("--min_accuracy", type=float, default=None)
    parser.add_argument("--confidence_threshold", type=float, default=None)
    parser.add_argument("--eval_batch_size", type=int, default=8)
    parser.add_argument("--preflight", type=_boolean, default=True)
    parser.add_argument("--nccl_debug", type=str.upper, choices=NCCL_DEBUG_LEVELS, default=None)
    return parser.parse_known_args(list(argv))


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return lowered in ("true", "1", "yes")


def _option(arguments: Sequence[str], flag: str) -> str | None:
    """The value of the last `flag value` pair in arguments (the one TrlParser keeps), if any."""
    values = [arguments[i + 1] for i, argument in enumerate(arguments[:-1]) if argument == flag]
    return values[-1] if values else None


def _config_value(config_file: Path, key: str) -> str | None:
    import yaml  # accelerate's own dependency, so it is on every training image that can launch

    value = (yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}).get(key)
    return None if value is None else str(value)


def build_commands(
    args: argparse.Namespace, train_args: Sequence[str], env: Mapping[str, str], *, python: str = sys.executable
) -> list[list[str]]:
    """The preflight checks, the accelerate command for this host, then (on the first host) the evaluation."""
    cluster = cluster_from_env(env)
    dataset = _require(env, "SM_CHANNEL_TRAIN")
    model_dir = Path(env.get("SM_MODEL_DIR") or _require(env, "SM_OUTPUT_DATA_DIR") + "/model")
    checkpoint_dir = args.checkpoint_dir or model_dir.parent / "checkpoints"

    launch = [python, "-m", "accelerate.commands.launch", "--config_file", str(args.accelerate_config.resolve())]
    launch += ["--deepspeed_config_file", str(args.deepspeed_config.resolve())]
    launch += ["--num_machines", str(len(cluster.hosts)), "--num_processes", str(cluster.processes)]
    launch += ["--machine_rank", str(cluster.rank)]
    if len(cluster.hosts) > 1:
        launch += ["--main_process_ip", cluster.hosts[0], "--main_process_port", str(RENDEZVOUS_PORT)]
    launch += ["-m", "training_job.train", "--config", str(args.train_config.resolve())]
    launch += ["--dataset_name", dataset, "--output_dir", str(checkpoint_dir), "--final_model_dir", str(model_dir)]
    if env.get("SM_CHANNEL_MODEL") and "--model_name_or_path" not in train_args:
        launch += ["--model_name_or_path", env["SM_CHANNEL_MODEL"]]
    launch += list(train_args)
    commands = [launch]

    if args.preflight:
        # Every host checks for itself: one host failing alone would leave the others waiting at the rendezvous.
        base = _option(launch, "--model_name_or_path") or _config_value(args.train_config, "model_name_or_path")
        if base is None:
            raise ValueError(f"no model_name_or_path in {args.train_config} or the hyper-parameters")
        preflight = [python, "-m", "training_job.preflight", "--model", base, "--dataset", dataset]
        revision = _option(launch, "--model_revision") or _config_value(args.train_config, "model_revision")
        if revision is not None:
            preflight += ["--revision", revision]
        commands.insert(0, preflight)

    if args.evaluate and cluster.is_main:
        evaluate = [python, "-m", "training_job.evaluate", "--model-dir", str(model_dir), "--dataset", dataset]
        evaluate += ["--output-dir", str(model_dir / "evaluation"), "--batch-size", str(args.eval_batch_size)]
        evaluate += ["--no-progress"]  # a progress bar per batch floods CloudWatch
        if args.min_accuracy is not None:
            evaluate += ["--min-accuracy", str(args.min_accuracy)]
        if args.confidence_threshold is not None:
            evaluate += ["--confidence-threshold", str(args.confidence_threshold)]
        if env.get("SM_CHANNEL_SERVED"):
            # The training pipeline's ServedModelGate reads the comparison (metrics.json `baseline`).
            evaluate += ["--baseline-model-dir", env["SM_CHANNEL_SERVED"]]
        commands.append(evaluate)
    return commands


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    args, train_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        commands = build_commands(args, train_args, env)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    deepspeed_ready = not uses_deepspeed(args.accelerate_config)
    network = multi_host_environment(cluster_from_env(env), env)
    if args.nccl_debug is not None:
        network["NCCL_DEBUG"] = args.nccl_debug
    if network:
        print("network: " + " ".join(f"{name}={value}" for name, value in sorted(network.items())), flush=True)
    env.update(network)
    # The children import training_job and classification from the asset root, wherever they start.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for command in commands:
        if not deepspeed_ready and "accelerate.commands.launch" in command:
            # After the preflight checks: a failing check should not wait for a DeepSpeed install.
            code = ensure_deepspeed()
            if code != 0:
                return code
            deepspeed_ready = True
        print("+ " + shlex.join(command), flush=True)
        code = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False).returncode
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
