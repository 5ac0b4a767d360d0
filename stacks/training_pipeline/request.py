"""ReadRequest and ValidateRequest: the execution input, defaults applied, and every problem with it.

The expressions are JSONata files beside this module (request.jsonata, problems.jsonata), written one clause a
line with comments. `render` fills their `{{name}}` placeholders and joins the lines into the single-line
expression the state machine definition carries (the one Step Functions has always run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stacks.common import constants
from stacks.config import TrainingPipelineConfig
from stacks.config.sections import RESERVED_HYPERPARAMETERS
from stacks.training_pipeline.names import INPUT_KEYS, TRAINING_JOB_NAME_MAX

JSONATA_DIR = Path(__file__).resolve().parent
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")
_OPENING = ("(", "[", "{")
_CLOSING = (")", "]", "}")


def render(name: str, **values: str) -> str:
    """`<name>.jsonata` as a Step Functions JSONata string `{% ... %}` with its placeholders filled.

    Fails synth if a placeholder has no value or a value no placeholder, so the file and its caller cannot drift.
    """
    path = JSONATA_DIR / f"{name}.jsonata"
    lines: list[str] = []
    in_comment = False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if in_comment or line.startswith("/*"):
            in_comment = not line.endswith("*/")
            continue
        if not line:
            continue
        if "/*" in line:
            raise ValueError(f"{path.name}: a comment must start its own line: {line!r}")
        lines.append(line)
    body = ""
    for line in lines:
        joined_tight = not body or body.endswith(_OPENING) or line.startswith(_CLOSING)
        body += line if joined_tight else " " + line
    wanted = set(_PLACEHOLDER_RE.findall(body))
    if wanted != set(values):
        raise ValueError(
            f"{path.name}: placeholders {sorted(wanted)} but values for {sorted(values)} (fill exactly those)"
        )
    return "{% " + _PLACEHOLDER_RE.sub(lambda match: values[match.group(1)], body) + " %}"


def request_expression(
    config: TrainingPipelineConfig, *, name_prefix: str, bucket_uri: str, confidence_threshold: float
) -> str:
    """JSONata: the execution input with defaults applied (validated by ValidateRequest)."""
    defaults = {name: hyperparameter(value) for name, value in sorted(config.hyperparameters.items())}
    # The evaluation reports the share of photos production would store as NEEDS_REVIEW at this threshold.
    fixed = {"evaluate": "true", "confidence_threshold": repr(confidence_threshold)}
    base_default = f'"{bucket_uri}{config.base_model_prefix}"' if config.base_model_prefix else "null"
    return render(
        "request",
        name_prefix=name_prefix,
        base_model_default=base_default,
        instance_count=str(config.instance_count),
        min_accuracy=repr(config.min_accuracy),
        default_hyperparameters=json.dumps(defaults),
        fixed_hyperparameters=json.dumps(fixed),
    )


def problems_expression(config: TrainingPipelineConfig, *, name_prefix: str, bucket_uri: str) -> str:
    """JSONata: a list of human-readable problems with the request (empty: valid)."""
    return render(
        "problems",
        name_prefix=name_prefix,
        input_keys=json.dumps(list(INPUT_KEYS)),
        input_keys_text=", ".join(INPUT_KEYS),
        datasets_uri=f"{bucket_uri}{constants.DATASETS_PREFIX}",
        base_models_uri=f"{bucket_uri}{constants.BASE_MODELS_PREFIX}",
        job_name_max=str(TRAINING_JOB_NAME_MAX),
        max_instance_count=str(config.max_instance_count),
        min_accuracy=repr(config.min_accuracy),
        reserved=json.dumps(list(RESERVED_HYPERPARAMETERS)),
    )


def hyperparameter(value: Any) -> str:
    """SageMaker hyper-parameters are strings; the toolkit passes them as `--name value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
