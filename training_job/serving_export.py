"""Make a saved model directory loadable by the serving image's transformers 4.x (DJL LMI + vLLM).

transformers 5 saves tokenizer and processor files that transformers 4.x cannot read: `tokenizer_class`
`TokenizersBackend` (a 5.x-only class), a list-valued `extra_special_tokens` (4.x expects a mapping) and the image
processor nested inside `processor_config.json` with no `preprocessor_config.json`. Fine-tuning changes none of
these files, so the fix is, in order:

1. copy the base model's own tokenizer/processor files over the saved ones when they can be found locally (a
   local base directory or the Hugging Face cache that training loaded from) — byte-identical to what the base
   model is served with today;
2. rewrite whatever is still in 5.x shape into the 4.x shape (the only path for a model whose base was itself
   saved by transformers 5, e.g. the tiny test model);
3. write the image-token profile's `image_grid_pinpoints` into `preprocessor_config.json` (and into a nested
   processor config if one is kept), the same value `config.json` carries, so serving follows the profile;
4. write `config.json`'s RoPE and vocabulary in both shapes: transformers 5 saves `text_config.rope_parameters`
   only, which 4.x never reads — it would run Mistral with its class default RoPE theta 10,000 instead of the
   trained 1,000,000, silently. The export adds the 4.x keys (`rope_theta`, `rope_scaling` for a non-default
   RoPE type, an explicit `vocab_size`) and fails unless a 4.x reader and the installed 5.x reader agree;
5. record the model profile it must be served with (`model_profile.json`: a fine-tune, whatever profile its base
   was staged with; classification/model_profile.py), which the labellers and the evaluation read.

Files written in the 4.x shape (the llava-hf/llava-v1.6-mistral-7b-hf layout): `tokenizer_config.json` with a
concrete class and a mapping (or no) `extra_special_tokens`; `preprocessor_config.json` (flat image processor);
`processor_config.json` (flat processor kwargs); `chat_template.json` beside `chat_template.jinja`; `config.json`
with both RoPE shapes.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classification.model_profile import FINE_TUNE, PROFILE_FILE

# The files that make up a LLaVA-NeXT processor; SFT changes none of them.
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
)
# 5.x-only tokenizer classes -> the 4.x class that reads the same tokenizer.json.
_TOKENIZER_CLASS_4X = {"TokenizersBackend": "PreTrainedTokenizerFast"}
_PROCESSOR_KEYS = (
    "image_token",
    "num_additional_image_tokens",
    "patch_size",
    "vision_feature_select_strategy",
)
# transformers 4.x builds a LLaVA-NeXT text config as CONFIG_MAPPING[text_config.get("model_type", "llama")](
# **text_config) (models/llava_next/configuration_llava_next.py); MistralConfig and LlamaConfig take `rope_theta`
# (default 10000.0), `rope_scaling` (default None: the default RoPE) and `vocab_size` (default 32000) as keys and
# never read `rope_parameters` (read in transformers 4.57.1, models/{mistral,llama}/configuration_*.py).
_DEFAULTS_4X = {"mistral": (10000.0, 32000), "llama": (10000.0, 32000)}


def base_processor_files(base_model: str, revision: str | None = None) -> dict[str, Path]:
    """The base model's processor files that exist locally (a directory or the HF cache); never downloads."""
    local = Path(base_model)
    if local.is_dir():
        return {name: local / name for name in PROCESSOR_FILES if (local / name).is_file()}
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return {}
    found = {}
    for name in PROCESSOR_FILES:
        cached = try_to_load_from_cache(base_model, name, revision=revision)
        if isinstance(cached, str):
            found[name] = Path(cached)
    return found


@dataclass(frozen=True)
class TextGeometry:
    """What a loader makes of `config.json`'s language model: the RoPE it runs and the vocabulary it embeds."""

    rope_theta: float
    rope_type: str
    vocab_size: int

    def describe(self) -> str:
        return f"RoPE theta {self.rope_theta:g} ({self.rope_type}), vocabulary {self.vocab_size}"


def text_geometry_4x(config: Mapping[str, Any]) -> TextGeometry:
    """`config.json` as transformers 4.x reads it (the keys and class defaults of `_DEFAULTS_4X`'s source)."""
    text = config.get("text_config")
    if not isinstance(text, Mapping):
        raise ValueError("config.json has no text_config: not a LLaVA-NeXT model")
    model_type = text.get("model_type", "llama")
    if model_type not in _DEFAULTS_4X:
        raise ValueError(f"no transformers 4.x reading is known for text model_type {model_type!r}")
    default_theta, default_vocab = _DEFAULTS_4X[model_type]
    scaling = text.get("rope_scaling")
    rope_type = "default"
    if isinstance(scaling, Mapping):
        rope_type = str(scaling.get("rope_type", scaling.get("type", "default")))
    return TextGeometry(
        rope_theta=float(text.get("rope_theta", default_theta)),
        rope_type=rope_type,
        vocab_size=int(text.get("vocab_size", default_vocab)),
    )


def text_geometry_5x(config: Mapping[str, Any]) -> TextGeometry:
    """`config.json` as the installed transformers (5.x: `rope_parameters`) reads it, through its config class."""
    from transformers import CONFIG_MAPPING

    model_config = CONFIG_MAPPING[config["model_type"]].from_dict(copy.deepcopy(dict(config)))
    text = model_config.text_config
    parameters = getattr(text, "rope_parameters", None)
    if not isinstance(parameters, Mapping) or "rope_theta" not in parameters:
        # Per-layer-type RoPE (nested rope_parameters) has no 4.x form; Mistral and Llama use one.
        raise ValueError(f"text_config.rope_parameters is not one flat RoPE: {parameters!r}")
    return TextGeometry(
        rope_theta=float(parameters["rope_theta"]),
        rope_type=str(parameters.get("rope_type", "default")),
        vocab_size=int(text.vocab_size),
    )


def export_for_serving(
    model_dir: str | Path,
    *,
    pinpoints: list[list[int]],
    base_model: str | None = None,
    revision: str | None = None,
) -> list[str]:
    """Apply steps 1-5 to model_dir in place; returns the file names written (for the training log)."""
    model_dir = Path(model_dir)
    written: list[str] = []
    if base_model is not None:
        for name, source in base_processor_files(base_model, revision).items():
            shutil.copyfile(source, model_dir / name)
            written.append(name)
    written += _rewrite_tokenizer_config(model_dir)
    written += _rewrite_processor_config(model_dir, pinpoints)
    written += _write_chat_template_json(model_dir)
    written += write_text_config_for_both_readers(model_dir)
    (model_dir / PROFILE_FILE).write_bytes(FINE_TUNE.record())
    written.append(PROFILE_FILE)
    _check_pinpoints_agree(model_dir, pinpoints)
    if base_model is not None:
        check_weight_names(model_dir, base_model, revision)
    return sorted(set(written))


def weight_names(model_dir: str | Path) -> set[str] | None:
    """Tensor names of a safetensors checkpoint (single file or sharded); None if it has none."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return set(_load(index)["weight_map"])
    single = model_dir / "model.safetensors"
    if not single.is_file():
        return None
    with safe_open(str(single), framework="pt") as file:
        return set(file.keys())


def base_weight_names(base_model: str, revision: str | None = None) -> set[str] | None:
    """Tensor names of the base checkpoint (a local directory or the HF cache); None if none is found locally."""
    local = Path(base_model)
    if local.is_dir():
        return weight_names(local)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    for name in ("model.safetensors.index.json", "model.safetensors"):
        cached = try_to_load_from_cache(base_model, name, revision=revision)
        if isinstance(cached, str):
            return weight_names(Path(cached).parent)
    return None


class WeightNamesError(ValueError):
    """The tensor names a model saves (or would save) differ from its base checkpoint's."""


def compare_weight_names(names: set[str], base: set[str], *, what: str) -> None:
    """Raise WeightNamesError listing the missing and unexpected names when `names` differ from `base`."""
    if names == base:
        return
    missing, extra = sorted(base - names), sorted(names - base)
    raise WeightNamesError(
        f"{what} differ from the base checkpoint's: {len(missing)} missing {_sample(missing)}, "
        f"{len(extra)} unexpected {_sample(extra)}. The serving image loads the base checkpoint's names only "
        "(vLLM: 'There is no module or parameter named ...')"
    )


def _sample(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    more = f", ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def check_weight_names(model_dir: str | Path, base_model: str, revision: str | None = None) -> None:
    """Fail if the saved tensor names differ from the base checkpoint's (the layout the serving stack loads).

    SFT changes values, never names; a renamed tensor means a save-path bug that would only surface when the
    endpoint fails to start, hours later. Training runs the same comparison before its first step
    (`training_job.train.check_names_before_training`).
    """
    base = base_weight_names(base_model, revision)
    saved = weight_names(model_dir)
    if base is None or saved is None:
        return
    compare_weight_names(saved, base, what="the saved model's tensor names")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _rewrite_tokenizer_config(model_dir: Path) -> list[str]:
    path = model_dir / "tokenizer_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the model directory has no tokenizer")
    config = _load(path)
    original = dict(config)
    tokenizer_class = config.get("tokenizer_class")
    config["tokenizer_class"] = _TOKENIZER_CLASS_4X.get(tokenizer_class, tokenizer_class)
    config.pop("backend", None)  # 5.x bookkeeping; 4.x would pass it on as an unknown init kwarg
    extra = config.get("extra_special_tokens")
    if isinstance(extra, list):
        # 4.x calls .items() on it. Named tokens (image_token) are what it is for; plain extra tokens are
        # 4.x's additional_special_tokens.
        config.pop("extra_special_tokens")
        if extra:
            config["additional_special_tokens"] = sorted(set(config.get("additional_special_tokens", []) + extra))
    named = {key: config[key] for key in ("image_token",) if isinstance(config.get(key), str)}
    if named:
        merged = dict(config.get("extra_special_tokens") or {})
        merged.update(named)
        config["extra_special_tokens"] = merged
    if config == original:
        return []
    _dump(path, config)
    return [path.name]


def _rewrite_processor_config(model_dir: Path, pinpoints: list[list[int]]) -> list[str]:
    processor_path = model_dir / "processor_config.json"
    preprocessor_path = model_dir / "preprocessor_config.json"
    processor = _load(processor_path) if processor_path.is_file() else {}
    nested = processor.pop("image_processor", None)
    if preprocessor_path.is_file():
        image_processor = _load(preprocessor_path)
    elif isinstance(nested, dict):
        image_processor = nested
    else:
        raise FileNotFoundError(f"{model_dir} has no image processor config (preprocessor_config.json)")
    image_processor["image_grid_pinpoints"] = pinpoints
    image_processor.setdefault("image_processor_type", "LlavaNextImageProcessor")
    image_processor["processor_class"] = processor.get("processor_class", "LlavaNextProcessor")
    _dump(preprocessor_path, image_processor)
    flat = {key: value for key, value in processor.items() if key in (*_PROCESSOR_KEYS, "processor_class")}
    flat.setdefault("processor_class", "LlavaNextProcessor")
    _dump(processor_path, flat)
    return [preprocessor_path.name, processor_path.name]


def _write_chat_template_json(model_dir: Path) -> list[str]:
    jinja = model_dir / "chat_template.jinja"
    json_path = model_dir / "chat_template.json"
    if json_path.is_file() or not jinja.is_file():
        return []
    # 4.x releases before chat_template.jinja read the processor's template from chat_template.json only.
    _dump(json_path, {"chat_template": jinja.read_text(encoding="utf-8")})
    return [json_path.name]


def write_text_config_for_both_readers(model_dir: str | Path) -> list[str]:
    """Add 4.x's RoPE/vocabulary keys beside 5.x's `rope_parameters` (step 4); ValueError if readers differ."""
    path = Path(model_dir) / "config.json"
    config = _load(path)
    trained = text_geometry_5x(config)  # what training's transformers built the model with
    text = config["text_config"]
    text["rope_theta"] = trained.rope_theta
    if trained.rope_type == "default":
        text.pop("rope_scaling", None)
    else:
        # 4.x's rope_scaling is 5.x's rope_parameters without the theta; 5.x reads it back the same way.
        text["rope_scaling"] = {k: v for k, v in text["rope_parameters"].items() if k != "rope_theta"}
    text["vocab_size"] = trained.vocab_size
    seen_by_4x, seen_by_5x = text_geometry_4x(config), text_geometry_5x(config)
    if not seen_by_4x == seen_by_5x == trained:
        raise ValueError(
            f"config.json is read differently: trained with {trained.describe()}, transformers 4.x would run "
            f"{seen_by_4x.describe()}, 5.x {seen_by_5x.describe()}"
        )
    _dump(path, config)
    return [path.name]


def _check_pinpoints_agree(model_dir: Path, pinpoints: list[list[int]]) -> None:
    config = _load(model_dir / "config.json")
    if config.get("image_grid_pinpoints") != pinpoints:
        # Mismatched pinpoints make forward() fail at serving time; catch it where it is made.
        raise ValueError(
            f"config.json image_grid_pinpoints {config.get('image_grid_pinpoints')} differ from the profile's "
            f"{pinpoints}; the model and the processor must agree"
        )
