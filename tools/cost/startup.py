"""What a scheduled window's labelling job spends before its first photo, phase by phase, with each source.

SageMaker bills a training job from TrainingStartTime to TrainingEndTime, instance count times; TrainingStartTime
comes after the instances are launched, and the time "to download the training data and [...] the training
container" is inside it (DescribeTrainingJob, https://docs.aws.amazon.com/sagemaker/latest/APIReference/
API_DescribeTrainingJob.html, TrainingStartTime). So capacity and provisioning cost latency only; the image pull,
the weights and the engine start are billed on every host of every window. docs/cost-model.md, "Start-up".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

AWS, PROJECT = "AWS", "project"


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    billed: bool
    controlled_by: str  # AWS or project
    basis: str  # how the figure was made, with its source
    lever: str = ""  # what would cut it (project phases)


@dataclass(frozen=True)
class StartUp:
    phases: tuple[Phase, ...]

    @property
    def billed_seconds(self) -> float:
        return sum(p.seconds for p in self.phases if p.billed)

    @property
    def total_seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    def with_billed_seconds(self, seconds: float) -> StartUp:
        """The same phases scaled so the billed ones sum to a measured `seconds` (--job-startup-seconds)."""
        if seconds < 0:
            raise ValueError(f"start-up seconds must be >= 0, got {seconds}")
        factor = seconds / self.billed_seconds if self.billed_seconds else 0.0
        return StartUp(
            tuple(
                replace(p, seconds=p.seconds * factor, basis=f"{p.basis}; scaled to a measured {seconds:g} s")
                if p.billed
                else p
                for p in self.phases
            )
        )


# -- the figures (each phase's source is in its basis) ----------------------------------------------------------
PROVISIONING_SECONDS = 120.0  # "Starting" -> "Downloading" in public SageMaker SDK training logs: 109-180 s
LMI_IMAGE_GB_ON_DISK = 18.0  # djl-serving PR #2591 (2024-11): the LMI image "down to 18GB" (22.3 GB nightly)
IMAGE_COMPRESSION = 0.5  # registry (gzip) size / size on disk, assumed for CUDA + Python layers
PULL_MB_PER_SECOND = 5_650_343_354 / 1e6 / 113.8  # 49.7 MB/s: TGI PR #2980, a 5.65-GB image in 1m53.8s on a g6
MODEL_GB = 15.1  # llava-v1.6-mistral-7b-hf: 7.57 B parameters x 2 bytes (bf16)
S3_MB_PER_SECOND = 300.0  # assumed: ~2.5 Gbps, the sustained share of a g5.xlarge's "up to 10 Gbps"
ENGINE_SECONDS = 60.0  # vLLM profiling (dummy multimodal inputs) + torch.compile + CUDA graph capture
ENGINE_EAGER_SECONDS = 25.0  # with enforce_eager: no torch.compile, no CUDA graphs
PROCESS_SECONDS = 20.0  # container + Python start: `import vllm` measured 7.4-8.3 s here, + CUDA init, manifest
FINISH_SECONDS = 10.0  # last checkpoint sync and summary upload before TrainingEndTime (assumed)


def default_start_up(*, enforce_eager: bool = False) -> StartUp:
    image_seconds = LMI_IMAGE_GB_ON_DISK * IMAGE_COMPRESSION * 1000 / PULL_MB_PER_SECOND
    return StartUp(
        (
            Phase(
                "capacity + provisioning",
                PROVISIONING_SECONDS,
                billed=False,
                controlled_by=AWS,
                basis="Starting -> Downloading in public SageMaker training logs, 109-180 s (more while Spot or "
                "GPU capacity is short: scheduled.spot_wait_minutes bounds the wait)",
            ),
            Phase(
                "image pull",
                image_seconds,
                billed=True,
                controlled_by=PROJECT,
                basis=f"the LMI image, {LMI_IMAGE_GB_ON_DISK:g} GB on disk (djl-serving#2591), x"
                f"{IMAGE_COMPRESSION:g} compressed (assumed), at {PULL_MB_PER_SECOND:.1f} MB/s (measured pull "
                "of a 5.65-GB inference image on a g6, text-generation-inference#2980)",
                lever="a vLLM-only image (the LMI image also carries DJL Serving's Java server and other engines)",
            ),
            Phase(
                "model weights from S3",
                MODEL_GB * 1000 / S3_MB_PER_SECOND,
                billed=True,
                controlled_by=PROJECT,
                basis=f"{MODEL_GB:g} GB of bf16 weights at {S3_MB_PER_SECOND:g} MB/s (assumed); FastFile streams "
                "them while vLLM loads (File mode would copy them first)",
                lever="more parallel S3 streams (the instance bursts to 10 Gbps), or fewer bytes (8-bit weights)",
            ),
            Phase(
                "engine start",
                ENGINE_EAGER_SECONDS if enforce_eager else ENGINE_SECONDS,
                billed=True,
                controlled_by=PROJECT,
                basis="vLLM memory profiling with dummy images, torch.compile and CUDA-graph capture: an 8B model "
                "took 14 s without and 39 s with compilation (vllm#11005), graph capture 17 s (vllm#20264)"
                + ("; enforce_eager skips compile and graphs" if enforce_eager else ""),
                lever="enforce_eager: the job is prefill-bound (~12 generated tokens a photo), where CUDA graphs "
                "help little",
            ),
            Phase(
                "process start + manifest",
                PROCESS_SECONDS,
                billed=True,
                controlled_by=PROJECT,
                basis="`import vllm` measured 7.4-8.3 s on this project's CI machine, + CUDA context and the "
                "manifest shard read (assumed)",
            ),
            Phase(
                "finish",
                FINISH_SECONDS,
                billed=True,
                controlled_by=PROJECT,
                basis="the last checkpoint sync and the host's summary upload (assumed)",
            ),
        )
    )


DEFAULT_START_UP = default_start_up()
