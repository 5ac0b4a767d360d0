"""Running the project's training entry point on a CPU: the argument overrides and the child environment."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_CONFIG = REPO_ROOT / "training_job" / "configs" / "sft_llava_next.yaml"


def cpu_training_args(*, learning_rate: float, lr_scheduler_type: str | None = None) -> list[str]:
    """Overrides of TRAIN_CONFIG for `python -m training_job.train` on a CPU.

    bf16 and gradient checkpointing are GPU settings, and a tiny random model needs a far larger learning rate
    than the seed's 2e-5 to learn in a few epochs. `lr_scheduler_type` None keeps the config's schedule.
    """
    args = [
        "--bf16",
        "false",
        "--gradient_checkpointing",
        "false",
        "--dtype",
        "float32",
        "--learning_rate",
        str(learning_rate),
        "--warmup_steps",
        "0",
    ]
    if lr_scheduler_type is not None:
        args += ["--lr_scheduler_type", lr_scheduler_type]
    return [
        *args,
        "--save_strategy",
        "no",
        "--dataloader_num_workers",
        "0",
        "--logging_steps",
        "10",
        "--report_to",
        "none",
    ]


def subprocess_env() -> dict[str, str]:
    """This process's environment for a training or serving child: offline, quiet, the repository importable."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


__all__ = ["REPO_ROOT", "TRAIN_CONFIG", "cpu_training_args", "subprocess_env"]
