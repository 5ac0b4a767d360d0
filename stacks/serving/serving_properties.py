"""Read model_code/serving.properties and turn it into the LMI container's environment and vLLM's engine args.

LMI accepts every `option.<key>` of serving.properties as the environment variable `OPTION_<KEY>` (upper case).
Passing them as model environment keeps the weights prefix untouched (the training job's output is served as
is, uncompressed) and keeps serving.properties the single source: the construct reads it at synth time.

`engine_args` applies the mapping LMI applies inside the container (djl-serving,
engines/python/setup/djl_python/properties_manager/vllm_rb_properties.py, `VllmRbProperties`): the synth runs it
to refuse values LMI would refuse, and the local engine (model_code/vllm_server.py) starts vLLM with its result,
so what the tests serve is configured by the same file as the endpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from stacks.common import constants

_KEY_RE = re.compile(r"^option\.[A-Za-z][A-Za-z0-9_]*$")
# LMI refuses to start when an LMI key and its vLLM alias are both set with different spellings of a value
# (its properties manager compares them as int vs str): keep only the LMI names.
_CONFLICTING_ALIASES = {
    "option.max_num_seqs": "option.max_rolling_batch_size",
    "option.tensor_parallel_size": "option.tensor_parallel_degree",
    "option.max_num_batched_tokens": "option.max_rolling_batch_prefill_tokens",
    "option.quantization": "option.quantize",
}


class InvalidServingProperties(ValueError):
    """serving.properties has a line the container environment cannot represent."""


def load(path: Path = constants.SERVING_PROPERTIES_FILE) -> dict[str, str]:
    """`option.*` key → value, in file order. Comments (#) and blank lines are skipped."""
    properties: dict[str, str] = {}
    for number, raw_line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        if "=" not in line:
            raise InvalidServingProperties(f"{where}: expected key=value, got {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if not _KEY_RE.match(key):
            raise InvalidServingProperties(
                f"{where}: only option.<name> keys can be passed as OPTION_<NAME> environment, got {key!r}"
            )
        if key in properties:
            raise InvalidServingProperties(f"{where}: {key} is set twice")
        if not value:
            raise InvalidServingProperties(f"{where}: {key} has an empty value")
        if key in _CONFLICTING_ALIASES:
            raise InvalidServingProperties(f"{where}: use {_CONFLICTING_ALIASES[key]} instead of {key}")
        if key == "option.rolling_batch":
            raise InvalidServingProperties(
                f"{where}: option.rolling_batch switches LMI out of async mode, whose chat path the Lambda needs"
            )
        properties[key] = value
    return properties


def to_environment(properties: dict[str, str]) -> dict[str, str]:
    """`option.max_model_len=4096` → `{"OPTION_MAX_MODEL_LEN": "4096"}`, after the GPU engine-args check."""
    engine_args(properties, device="gpu")  # a value LMI would refuse fails the synth, not the endpoint's start
    return {"OPTION_" + key.removeprefix("option.").upper(): value for key, value in properties.items()}


# LMI's names for vLLM engine args (VllmRbProperties: the DJL name is the one accepted).
LMI_TO_VLLM = {
    "max_rolling_batch_size": "max_num_seqs",
    "tensor_parallel_degree": "tensor_parallel_size",
    "pipeline_parallel_degree": "pipeline_parallel_size",
    "max_rolling_batch_prefill_tokens": "max_num_batched_tokens",
    "quantize": "quantization",
    "cpu_offload_gb_per_gpu": "cpu_offload_gb",
}
# LMI's DTYPE_MAPPER: the spellings option.dtype accepts and the vLLM dtype each becomes.
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "auto": "auto",
}
# Read by LMI's Java front end or its Python handler, never handed to vLLM (not EngineArgs fields).
LMI_ONLY = frozenset(
    {"model_id", "model_loading_timeout", "entryPoint", "engine", "rolling_batch", "chat_template", "task"}
)
# GPU-only settings the CPU build has no use for: one process, no CUDA memory pool (its KV cache is sized by
# VLLM_CPU_KVCACHE_SPACE instead of gpu_memory_utilization).
GPU_ONLY = frozenset(
    {"tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization", "cpu_offload_gb"}
)
# Keys whose value must be an integer >= 1, a boolean, or a JSON object, as vLLM's argument parser reads them.
_POSITIVE_INTS = frozenset({"max_num_seqs", "max_model_len", "max_num_batched_tokens", "tensor_parallel_size"})
_BOOLEANS = frozenset({"enable_prefix_caching", "enable_chunked_prefill", "enforce_eager", "trust_remote_code"})
_JSON_OBJECTS = frozenset({"limit_mm_per_prompt", "mm_processor_kwargs"})
# GiB sizes vLLM declares as floats >= 0 (0 turns the cache off).
_NON_NEGATIVE_NUMBERS = frozenset({"mm_processor_cache_gb"})


def engine_args(properties: dict[str, str], *, device: Literal["gpu", "cpu"]) -> dict[str, str | bool]:
    """vLLM engine arguments (vLLM's names, underscores) for the `option.*` properties, as LMI maps them.

    LMI renames its own keys (`max_rolling_batch_size` → `max_num_seqs`, ...), maps `dtype` spellings, keeps its
    own keys (`model_loading_timeout`, ...) for itself and passes every other key through. On `device="cpu"`
    (the local engine) the dtype is float32 (what vLLM's CPU build runs reliably) and GPU-only keys are dropped.
    Booleans come back as bool; everything else as the property's text. InvalidServingProperties on a value
    vLLM or LMI would refuse.
    """
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    args: dict[str, str | bool] = {}
    for key, value in properties.items():
        name = key.removeprefix("option.")
        if name in LMI_ONLY:
            continue
        name = LMI_TO_VLLM.get(name, name)
        if name == "dtype":
            if value not in DTYPES:
                raise InvalidServingProperties(f"{key}={value!r}: LMI accepts {', '.join(DTYPES)}")
            value = DTYPES[value]
        elif name in _POSITIVE_INTS and (not value.isdigit() or int(value) < 1):
            raise InvalidServingProperties(f"{key}={value!r}: must be a positive integer")
        elif name in _NON_NEGATIVE_NUMBERS and not _non_negative_number(value):
            raise InvalidServingProperties(f"{key}={value!r}: must be a number >= 0")
        elif name in _JSON_OBJECTS:
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as error:
                raise InvalidServingProperties(f"{key}={value!r}: not JSON ({error})") from error
            if not isinstance(parsed, dict):
                raise InvalidServingProperties(f"{key}={value!r}: must be a JSON object")
        if name in _BOOLEANS:
            if value.lower() not in ("true", "false"):
                raise InvalidServingProperties(f"{key}={value!r}: must be true or false")
            args[name] = value.lower() == "true"
        else:
            args[name] = value
    if device == "cpu":
        args = {name: value for name, value in args.items() if name not in GPU_ONLY}
        args["dtype"] = "float32"
    return args


def cli_args(args: Mapping[str, str | bool]) -> list[str]:
    """Engine args as vLLM's command line, spelled as LMI's construct_vllm_args_list spells them (djl-serving,
    engines/python/setup/djl_python/properties_manager/vllm_rb_properties.py): true -> --key, false -> --no-key.

    The local server (model_code/vllm_server.py) runs with these words, and the labelling job parses them with
    vLLM's own argument parser (labelling_job/engine.py), so both read serving.properties' values the same way.
    """
    words: list[str] = []
    for name, value in args.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            words.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            words += [f"--{flag}", value]
    return words


def _non_negative_number(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return number >= 0 and number != float("inf")


def engine_batch_size(properties: dict[str, str]) -> int:
    """`option.max_rolling_batch_size`: the requests one instance's engine runs at once (vLLM max_num_seqs).

    Required rather than defaulted: the synth-time load check (stacks/serving/endpoint_load.py) sizes the
    labellers' concurrency against it, and LMI's own default differs between releases.
    """
    key = "option.max_rolling_batch_size"
    value = properties.get(key)
    if value is None:
        raise InvalidServingProperties(
            f"{constants.SERVING_PROPERTIES_FILE.name}: {key} must be set; the labellers' concurrency is checked "
            "against it at synth"
        )
    if not value.isdigit() or int(value) < 1:
        raise InvalidServingProperties(
            f"{constants.SERVING_PROPERTIES_FILE.name}: {key} must be a positive integer, got {value!r}"
        )
    return int(value)
