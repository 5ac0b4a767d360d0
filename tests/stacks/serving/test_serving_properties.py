"""model_code/serving.properties: LMI async mode, sized for one A10G, the single source of the container env."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stacks.common import constants
from stacks.config import EndpointSettings
from stacks.serving import serving_properties
from stacks.serving.serving_properties import InvalidServingProperties


def test_committed_file_runs_lmi_in_async_mode_sized_for_one_a10g() -> None:
    options = serving_properties.load()
    # Async mode: no rolling_batch; weights from the mounted /opt/ml/model, so no model_id either.
    assert "option.rolling_batch" not in options
    assert "option.model_id" not in options
    assert options["option.tensor_parallel_degree"] == "1"
    # ~2.3k-token prompts (up to ~3.1k for square photos) must fit.
    assert 3200 <= int(options["option.max_model_len"]) <= 8192
    assert int(options["option.max_rolling_batch_size"]) >= 8
    assert 0.5 < float(options["option.gpu_memory_utilization"]) <= 0.95
    assert options["option.enable_prefix_caching"] == "true"
    assert options["option.limit_mm_per_prompt"] == '{"image":1}'
    assert int(options["option.model_loading_timeout"]) <= EndpointSettings().container_startup_timeout_seconds


def test_the_multimodal_processor_cache_is_off_on_the_endpoint_and_the_local_engine() -> None:
    # Every photo is unique, so the cache (vLLM's default: 4 GiB per API and engine process, of the g5.xlarge's
    # 16 GiB host RAM) never hits. vllm/config/multimodal.py MultiModalConfig.mm_processor_cache_gb: "Set to `0` to
    # disable this cache completely"; already an EngineArgs field in vLLM 0.11 (docs.vllm.ai/en/v0.11.0, the same
    # module), so the LMI images from 0.35.0 on take it; LMI passes EngineArgs fields through unchanged.
    options = serving_properties.load()
    assert options["option.mm_processor_cache_gb"] == "0"
    assert serving_properties.to_environment(options)["OPTION_MM_PROCESSOR_CACHE_GB"] == "0"
    for device in ("gpu", "cpu"):
        assert serving_properties.engine_args(options, device=device)["mm_processor_cache_gb"] == "0"


def test_every_tuned_key_carries_a_reason_on_the_line_above() -> None:
    lines = constants.SERVING_PROPERTIES_FILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("option."):
            assert lines[index - 1].startswith("# "), f"{line!r} has no one-line reason above it"


def test_options_become_lmi_environment_variables() -> None:
    env = serving_properties.to_environment(
        {"option.max_model_len": "4096", "option.enable_prefix_caching": "true"}
    )
    assert env == {"OPTION_MAX_MODEL_LEN": "4096", "OPTION_ENABLE_PREFIX_CACHING": "true"}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("engine=Python\n", "only option.<name> keys"),
        ("option.dtype=bf16\noption.dtype=fp16\n", "set twice"),
        ("option.dtype\n", "expected key=value"),
        ("option.dtype=\n", "empty value"),
        ("option.max_num_seqs=16\n", "option.max_rolling_batch_size instead"),
        ("option.rolling_batch=vllm\n", "async mode"),
    ],
)
def test_lines_the_environment_cannot_carry_are_refused_with_the_line_number(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "serving.properties"
    path.write_text("# comment\n\n" + content)
    with pytest.raises(
        InvalidServingProperties, match=r"serving\.properties:\d+: .*" + fragment.replace(".", r"\.")
    ):
        serving_properties.load(path)


# -- engine args: the mapping LMI applies inside the container ---------------------------------------------------
# Source: djl-serving engines/python/setup/djl_python/properties_manager/vllm_rb_properties.py (`VllmRbProperties`,
# read at github.com/deepjavalibrary/djl-serving d21927c): generate_vllm_engine_arg_dict renames
# max_rolling_batch_size -> max_num_seqs and tensor_parallel_degree -> tensor_parallel_size, maps dtype through
# DTYPE_MAPPER (bf16 -> bfloat16), and get_additional_vllm_engine_args passes through only the keys that are
# EngineArgs fields (anything else, e.g. model_loading_timeout, stays with LMI).


def test_lmi_mapping_of_the_committed_file_for_the_gpu_endpoint() -> None:
    args = serving_properties.engine_args(serving_properties.load(), device="gpu")
    options = serving_properties.load()

    assert args["max_num_seqs"] == options["option.max_rolling_batch_size"]
    assert args["tensor_parallel_size"] == options["option.tensor_parallel_degree"]
    assert args["dtype"] == "bfloat16"
    assert args["max_model_len"] == options["option.max_model_len"]
    assert args["enable_prefix_caching"] is True
    assert args["limit_mm_per_prompt"] == '{"image":1}'
    assert args["gpu_memory_utilization"] == options["option.gpu_memory_utilization"]
    # LMI's own keys never reach vLLM, and no LMI name survives under its own spelling
    assert "model_loading_timeout" not in args
    assert not {"max_rolling_batch_size", "tensor_parallel_degree"} & set(args)


def test_the_local_cpu_engine_gets_the_same_args_in_float32_without_gpu_only_keys() -> None:
    gpu = serving_properties.engine_args(serving_properties.load(), device="gpu")
    cpu = serving_properties.engine_args(serving_properties.load(), device="cpu")

    assert cpu["dtype"] == "float32"
    assert not {"gpu_memory_utilization", "tensor_parallel_size"} & set(cpu)
    assert {k: v for k, v in gpu.items() if k in cpu and k != "dtype"} == {
        k: v for k, v in cpu.items() if k != "dtype"
    }


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"option.dtype": "bf32"}, "LMI accepts"),
        ({"option.max_model_len": "4k"}, "positive integer"),
        ({"option.max_rolling_batch_size": "0"}, "positive integer"),
        ({"option.enable_prefix_caching": "yes"}, "true or false"),
        ({"option.limit_mm_per_prompt": "image=1"}, "not JSON"),
        ({"option.limit_mm_per_prompt": "[1]"}, "JSON object"),
        ({"option.mm_processor_cache_gb": "-1"}, "number >= 0"),
        ({"option.mm_processor_cache_gb": "off"}, "number >= 0"),
    ],
)
def test_values_lmi_or_vllm_would_refuse_fail_the_synth(options: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidServingProperties, match=fragment):
        serving_properties.to_environment(options)
    with pytest.raises(InvalidServingProperties, match=fragment):
        serving_properties.engine_args(options, device="cpu")


@pytest.mark.slow
def test_every_key_passed_to_vllm_is_one_of_its_engine_args() -> None:
    # LMI silently drops a key that is not an EngineArgs field: a typo in serving.properties would go unnoticed.
    serve_python = constants.PROJECT_ROOT / ".venv-serve" / "bin" / "python"
    if not serve_python.is_file():
        pytest.skip(f"{serve_python} is not installed (make setup builds it): vLLM's EngineArgs are not available")
    fields = subprocess.run(
        [
            str(serve_python),
            "-c",
            "import json; from vllm import EngineArgs; print(json.dumps(list(EngineArgs.__annotations__)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.splitlines()[-1]
    for device in ("gpu", "cpu"):
        args = serving_properties.engine_args(serving_properties.load(), device=device)
        assert set(args) <= set(json.loads(fields)), device
