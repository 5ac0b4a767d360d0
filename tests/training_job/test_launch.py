"""The SageMaker launcher: cluster shape from SM_* variables, and a real ZeRO-3 run through accelerate."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from training_testkit import CPU_TRAINING_ARGS, run_cli

from training_job import launch

SM_ENV = {
    "SM_NUM_GPUS": "8",
    "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
    "SM_CURRENT_HOST": "algo-2",
    "SM_CHANNEL_TRAIN": "/data/train",
    "SM_MODEL_DIR": "/job/model",
    "SM_OUTPUT_DATA_DIR": "/job/output/data",
}


def _commands(env: dict[str, str], *argv: str) -> list[list[str]]:
    args, train_args = launch.parse_args(argv)
    return launch.build_commands(args, train_args, env, python="python")


def _value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_two_p5_hosts_launch_sixteen_processes_with_the_first_host_as_rendezvous() -> None:
    # When the second of two 8-GPU hosts builds its commands
    preflight, train = _commands(SM_ENV, "--num_train_epochs", "3", "--image_token_profile", "compact")

    # Then the preflight checks run first on the config's base model and the train channel
    assert preflight == [
        "python",
        "-m",
        "training_job.preflight",
        "--model",
        "llava-hf/llava-v1.6-mistral-7b-hf",
        "--dataset",
        "/data/train",
    ]
    # and accelerate spans both machines with this host's rank, and only host 1 evaluates
    assert train[:3] == ["python", "-m", "accelerate.commands.launch"]
    assert _value(train, "--num_machines") == "2"
    assert _value(train, "--num_processes") == "16"
    assert _value(train, "--machine_rank") == "1"
    assert _value(train, "--main_process_ip") == "algo-1"
    assert _value(train, "--dataset_name") == "/data/train"
    assert _value(train, "--final_model_dir") == "/job/model"
    # checkpoints beside the model dir: SageMaker's default checkpoint path, synced for spot restarts
    assert _value(train, "--output_dir") == "/job/checkpoints"
    assert train[-4:] == ["--num_train_epochs", "3", "--image_token_profile", "compact"]
    assert Path(_value(train, "--deepspeed_config_file")).name == "ds_zero3.json"


def test_the_first_host_also_evaluates_into_the_model_folder() -> None:
    env = {**SM_ENV, "SM_CURRENT_HOST": "algo-1", "SM_CHANNEL_MODEL": "/data/base"}
    preflight, train, evaluate = _commands(
        env, "--min_accuracy", "0.85", "--eval_batch_size", "4", "--confidence_threshold", "0.7"
    )
    assert _value(preflight, "--model") == "/data/base"  # the base the training will load
    assert _value(train, "--machine_rank") == "0"
    assert _value(train, "--model_name_or_path") == "/data/base"  # base weights from the model channel
    assert evaluate[:3] == ["python", "-m", "training_job.evaluate"]
    assert _value(evaluate, "--output-dir") == "/job/model/evaluation"
    assert _value(evaluate, "--min-accuracy") == "0.85"
    assert _value(evaluate, "--batch-size") == "4"
    assert _value(evaluate, "--confidence-threshold") == "0.7"  # the upload path's threshold, if it differs
    assert "--confidence_threshold" not in train  # an evaluation setting, not a training one
    assert "--baseline-model-dir" not in evaluate  # nothing served to compare with


def test_the_served_model_channel_becomes_the_evaluations_baseline() -> None:
    # Given the training pipeline passed the model the endpoint serves as the `served` channel
    env = {**SM_ENV, "SM_CURRENT_HOST": "algo-1", "SM_CHANNEL_SERVED": "/data/served"}
    *_, evaluate = _commands(env)
    # Then the evaluation answers the same photos with it (metrics.json `baseline`, read by ServedModelGate)
    assert _value(evaluate, "--baseline-model-dir") == "/data/served"


def test_single_host_without_gpus_runs_one_process_and_can_skip_evaluation() -> None:
    env = {"SM_CHANNEL_TRAIN": "/data/train", "SM_MODEL_DIR": "/job/model", "SM_NUM_GPUS": "0"}
    commands = _commands(env, "--evaluate", "false", "--preflight", "false")
    assert len(commands) == 1
    assert _value(commands[0], "--num_processes") == "1"
    assert "--main_process_ip" not in commands[0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SM_MODEL_DIR": "/m"}, "SM_CHANNEL_TRAIN is not set"),
        ({**SM_ENV, "SM_CURRENT_HOST": "algo-9"}, "SM_CURRENT_HOST 'algo-9' is not one of"),
    ],
)
def test_a_broken_environment_is_a_clear_error(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launch.main([], env=env) == 1
    assert message in capsys.readouterr().err


# -- multi-host network settings: what the SageMaker toolkit's torchrun runner would set ------------------------
# Source: aws/sagemaker-training-toolkit v5.1.0, src/sagemaker_training/torch_distributed.py
# (TorchDistributedRunner._setup) with SM_EFA_NCCL_INSTANCES / SM_EFA_RDMA_INSTANCES from its __init__.py.


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        (
            "ml.p4d.24xlarge",
            {
                "NCCL_SOCKET_IFNAME": "eth1",
                "NCCL_PROTO": "simple",
                "FI_PROVIDER": "efa",
                "FI_EFA_USE_DEVICE_RDMA": "1",
                "RDMAV_FORK_SAFE": "1",
            },
        ),
        # The toolkit lists P5 for EFA but not for device RDMA.
        ("ml.p5.48xlarge", {"NCCL_SOCKET_IFNAME": "eth1", "NCCL_PROTO": "simple", "FI_PROVIDER": "efa"}),
        ("ml.g5.12xlarge", {"NCCL_SOCKET_IFNAME": "eth1", "NCCL_PROTO": "simple"}),  # no EFA on this size
    ],
)
def test_more_than_one_host_gets_the_toolkits_efa_and_nccl_settings(
    instance_type: str, expected: dict[str, str]
) -> None:
    env = {**SM_ENV, "SM_CURRENT_INSTANCE_TYPE": instance_type, "SM_NETWORK_INTERFACE_NAME": "eth1"}
    assert launch.multi_host_environment(launch.cluster_from_env(env), env) == expected


def test_one_host_gets_no_network_settings_and_the_jobs_own_values_win() -> None:
    one_host = {**SM_ENV, "SM_HOSTS": json.dumps(["algo-1"]), "SM_CURRENT_HOST": "algo-1"}
    one_host["SM_CURRENT_INSTANCE_TYPE"] = "ml.p4d.24xlarge"
    assert launch.multi_host_environment(launch.cluster_from_env(one_host), one_host) == {}

    # Without SM_NETWORK_INTERFACE_NAME: the toolkit's eth0; a value the job's environment sets stays the job's
    env = {**SM_ENV, "SM_CURRENT_INSTANCE_TYPE": "ml.p4d.24xlarge", "NCCL_PROTO": "LL128"}
    settings = launch.multi_host_environment(launch.cluster_from_env(env), env)
    assert settings["NCCL_SOCKET_IFNAME"] == "eth0"
    assert "NCCL_PROTO" not in settings


def test_the_training_processes_start_with_the_settings_and_the_nccl_debug_switch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the second of two P5 hosts, and a recorder in place of the subprocesses
    launched: list[tuple[list[str], dict[str, str]]] = []

    def record(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        launched.append((command, kwargs["env"]))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(launch, "ensure_deepspeed", lambda: 0)
    monkeypatch.setattr(launch.subprocess, "run", record)
    env = {**SM_ENV, "SM_CHANNEL_TRAIN": str(tmp_path), "SM_CURRENT_INSTANCE_TYPE": "ml.p5.48xlarge"}

    # When the launcher runs with the documented switch for a first multi-host run (a hyper-parameter)
    assert launch.main(["--preflight", "false", "--nccl_debug", "info"], env=env) == 0

    # Then accelerate (and through it torchrun and every rank) inherits EFA, the interface and NCCL_DEBUG=INFO,
    # and the log says what was set
    ((command, child_env),) = launched
    assert command[2] == "accelerate.commands.launch"
    assert {k: child_env[k] for k in ("FI_PROVIDER", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG")} == {
        "FI_PROVIDER": "efa",
        "NCCL_SOCKET_IFNAME": "eth0",
        "NCCL_DEBUG": "INFO",
    }
    assert "network: FI_PROVIDER=efa NCCL_DEBUG=INFO NCCL_PROTO=simple NCCL_SOCKET_IFNAME=eth0" in (
        capsys.readouterr().out
    )
    assert "--nccl_debug" not in command  # a launcher option, not one for training_job.train


def test_an_unknown_nccl_debug_level_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        launch.parse_args(["--nccl_debug", "LOUD"])
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err


def test_the_shipped_accelerate_config_needs_deepspeed_and_a_plain_one_does_not(tmp_path: Path) -> None:
    plain = tmp_path / "ddp.yaml"
    plain.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\n", encoding="utf-8")
    assert launch.uses_deepspeed(launch.CONFIGS / "accelerate_zero3.yaml")
    assert not launch.uses_deepspeed(plain)


class FakePip:
    """Stands in for pip and the import check: records commands, 'installs' by changing what the probe sees."""

    def __init__(self, installed: str | None, *, exit_code: int = 0, importable_after: bool = True) -> None:
        self.installed = installed
        self.exit_code = exit_code
        self.importable_after = importable_after
        self.commands: list[list[str]] = []

    def probe(self) -> str | None:
        return self.installed

    def run(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        if self.exit_code == 0 and self.importable_after:
            self.installed = launch.DEEPSPEED_VERSION
        return self.exit_code


def test_missing_deepspeed_is_installed_without_build_isolation_before_training(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an image where `import deepspeed` fails
    pip = FakePip(installed=None)

    # When the launcher makes sure of it
    code = launch.ensure_deepspeed(probe=pip.probe, run=pip.run, python="python")

    # Then it installs the pinned version the way the Makefile does, says so, and goes on
    assert code == 0
    assert pip.commands == [
        ["python", "-m", "pip", "install", "--no-build-isolation", f"deepspeed=={launch.DEEPSPEED_VERSION}"]
    ]
    out = capsys.readouterr().out
    assert "deepspeed is not importable: installing it" in out
    assert "--no-build-isolation deepspeed==0.19.8" in out
    assert "deepspeed 0.19.8 installed" in out


@pytest.mark.parametrize(
    ("installed", "message"),
    [("0.19.8", "deepspeed 0.19.8 is installed"), ("0.16.4", "deepspeed 0.16.4 is installed (pinned 0.19.8)")],
)
def test_an_importable_deepspeed_is_kept_whatever_its_version(
    installed: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pip = FakePip(installed=installed)
    assert launch.ensure_deepspeed(probe=pip.probe, run=pip.run) == 0
    assert pip.commands == []  # never reinstalled over an image's own build
    assert message in capsys.readouterr().out


@pytest.mark.parametrize(
    ("pip", "message"),
    [
        (FakePip(installed=None, exit_code=1), "installing deepspeed==0.19.8 failed (exit code 1)"),
        (FakePip(installed=None, importable_after=False), "installed but cannot be imported"),
    ],
    ids=["pip-fails", "still-not-importable"],
)
def test_a_failed_deepspeed_install_stops_the_launch_with_the_reason(
    pip: FakePip, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launch.ensure_deepspeed(probe=pip.probe, run=pip.run) == launch.EXIT_DEEPSPEED_MISSING
    assert message in capsys.readouterr().err


def test_the_launcher_checks_deepspeed_before_accelerate_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a host where DeepSpeed cannot be installed, and a recorder in place of the subprocesses
    launched: list[list[str]] = []

    def record(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        launched.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(launch, "ensure_deepspeed", lambda: launch.EXIT_DEEPSPEED_MISSING)
    monkeypatch.setattr(launch.subprocess, "run", record)
    env = {"SM_CHANNEL_TRAIN": str(tmp_path), "SM_MODEL_DIR": str(tmp_path / "model"), "SM_NUM_GPUS": "0"}

    # When the launcher runs with the shipped (DeepSpeed) accelerate config
    code = launch.main([], env=env)

    # Then only the preflight checks ran: it stops with the DeepSpeed exit code and never starts accelerate
    assert code == launch.EXIT_DEEPSPEED_MISSING
    assert [command[2] for command in launched] == ["training_job.preflight"]


@pytest.mark.slow
def test_zero3_run_through_accelerate_saves_full_weights_in_the_base_layout(
    tiny_model_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    # Given the SageMaker environment of one host without GPUs
    env = {
        "SM_NUM_GPUS": "0",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
        "SM_CHANNEL_TRAIN": str(dataset_dir),
        "SM_MODEL_DIR": str(tmp_path / "model"),
    }
    args = ["training_job/launch.py", "--model_name_or_path", str(tiny_model_dir), "--max_steps", "3"]
    args += [*CPU_TRAINING_ARGS, "--logging_steps", "1", "--image_token_profile", "compact"]

    # When the launcher runs training (accelerate + DeepSpeed ZeRO-3) and evaluation
    result = run_cli(args, extra_env=env)

    # Then DeepSpeed stage 3 trained, and the save gathered full weights under the base checkpoint's names
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"deepspeed {launch.DEEPSPEED_VERSION} is installed" in result.stdout  # checked before accelerate ran
    assert "DEEPSPEED x1 (ZeRO stage 3)" in result.stdout + result.stderr
    before = load_file(tiny_model_dir / "model.safetensors")
    # checked before the first step (the launcher's preflight ran even earlier) ...
    assert "PASS  preflight: 2 checks passed" in result.stdout
    names = f"weight names: the save will write the base checkpoint's {len(before)} tensor names"
    assert names in result.stdout + result.stderr
    # ... and true after the save: the hub checkpoint's names (vision_tower.vision_model.*), not transformers 5's
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert set(after) == set(before)
    assert all(after[name].shape == before[name].shape for name in before)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    metrics = json.loads((tmp_path / "model" / "evaluation" / "metrics.json").read_text())
    assert metrics["samples"] == 24


class LaunchRecorder:
    """Records how accelerate starts a DeepSpeed job: torchrun in this process, or a `deepspeed` child process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torch.distributed.run as torchrun
        from accelerate.commands import launch as accelerate_launch

        self.torchrun: list[Any] = []
        self.children: list[list[str]] = []
        monkeypatch.setattr(torchrun, "run", self.torchrun.append)
        # Only accelerate's launcher module sees the fake: its GPU probe elsewhere keeps the real subprocess.
        fake = SimpleNamespace(Popen=self._popen, CalledProcessError=subprocess.CalledProcessError)
        monkeypatch.setattr(accelerate_launch, "subprocess", fake)

    def _popen(self, command: list[str], **_: Any) -> Any:
        self.children.append(command)
        return SimpleNamespace(wait=lambda: 0, returncode=0)

    def launch(self, command: list[str]) -> None:
        from accelerate.commands.launch import launch_command, launch_command_parser

        assert command[1:3] == ["-m", "accelerate.commands.launch"]
        launch_command(launch_command_parser().parse_args(command[3:]))


def test_two_hosts_start_torchrun_on_each_host_not_pdsh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given the command the second of two 8-GPU hosts builds with the shipped accelerate config
    monkeypatch.chdir(tmp_path)  # a pdsh launch would write .deepspeed_env here
    (train,) = _commands(SM_ENV, "--evaluate", "false", "--preflight", "false")
    recorder = LaunchRecorder(monkeypatch)

    # When accelerate's own launcher runs it (up to the point where it starts processes)
    recorder.launch(train)

    # Then it runs torchrun here, as node 1 of 2 with 8 processes, meeting at the first host; no pdsh/ssh child
    assert recorder.children == []
    (torchrun_args,) = recorder.torchrun
    assert (torchrun_args.nnodes, torchrun_args.node_rank, torchrun_args.nproc_per_node) == ("2", 1, "8")
    # torchrun's static rendezvous: every host dials the first host's port (SM_HOSTS[0])
    assert torchrun_args.rdzv_backend == "static"
    assert torchrun_args.rdzv_endpoint == f"algo-1:{launch.RENDEZVOUS_PORT}"
    assert torchrun_args.module and torchrun_args.training_script == "training_job.train"


def test_without_the_standard_launcher_accelerate_would_need_pdsh(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given the shipped accelerate config minus its multi-node launcher setting (the bug's configuration)
    monkeypatch.chdir(tmp_path)
    shipped = (launch.CONFIGS / "accelerate_zero3.yaml").read_text(encoding="utf-8")
    assert "deepspeed_multinode_launcher: standard" in shipped
    pdsh_config = tmp_path / "accelerate_pdsh.yaml"
    pdsh_config.write_text(shipped.replace("deepspeed_multinode_launcher: standard", ""), encoding="utf-8")
    (train,) = _commands(
        SM_ENV, "--evaluate", "false", "--preflight", "false", "--accelerate_config", str(pdsh_config)
    )
    recorder = LaunchRecorder(monkeypatch)

    # When accelerate's launcher runs it
    recorder.launch(train)

    # Then it would start `deepspeed --launcher pdsh`, which SageMaker hosts cannot run
    assert recorder.torchrun == []
    (child,) = recorder.children
    assert child[0] == "deepspeed"
    assert child[child.index("--launcher") + 1] == "pdsh"
