"""model_code/serving.properties: LMI async mode, sized for one A10G, the single source of the container env."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import constants, serving_properties
from stacks.config import EndpointSettings
from stacks.serving_properties import InvalidServingProperties


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
