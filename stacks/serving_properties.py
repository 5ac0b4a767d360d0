"""Read model_code/serving.properties and turn it into the LMI container's environment.

LMI accepts every `option.<key>` of serving.properties as the environment variable `OPTION_<KEY>` (upper case).
Passing them as model environment keeps the weights prefix untouched (the training job's output is served as
is, uncompressed) and keeps serving.properties the single source: the construct reads it at synth time.
"""

from __future__ import annotations

import re
from pathlib import Path

from stacks import constants

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
    """`option.max_model_len=4096` → `{"OPTION_MAX_MODEL_LEN": "4096"}`."""
    return {"OPTION_" + key.removeprefix("option.").upper(): value for key, value in properties.items()}


def engine_batch_size(properties: dict[str, str]) -> int:
    """`option.max_rolling_batch_size`: the requests one instance's engine runs at once (vLLM max_num_seqs).

    Required rather than defaulted: the synth-time load check (stacks/endpoint_load.py) sizes the labellers'
    concurrency against it, and LMI's own default differs between releases.
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
