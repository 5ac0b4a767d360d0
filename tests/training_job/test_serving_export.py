"""The saved model folder is rewritten into the file shapes the serving image's transformers 4.x reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from training_testkit import read_with_transformers_4

from classification.image_tokens import GRID_PINPOINTS
from training_job.serving_export import (
    TextGeometry,
    check_weight_names,
    export_for_serving,
    text_geometry_4x,
    text_geometry_5x,
    write_text_config_for_both_readers,
)
from training_job.tiny_model import ROPE_THETA

# llava-hf/llava-v1.6-mistral-7b-hf's config.json on the Hub (transformers 4.39 wrote it; the 4.x key shape).
HUB_CONFIG = {
    "architectures": ["LlavaNextForConditionalGeneration"],
    "ignore_index": -100,
    "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    "image_token_index": 32000,
    "model_type": "llava_next",
    "projector_hidden_act": "gelu",
    "text_config": {
        "_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2",
        "architectures": ["MistralForCausalLM"],
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "model_type": "mistral",
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "torch_dtype": "bfloat16",
        "vocab_size": 32064,
    },
    "torch_dtype": "float16",
    "use_image_newline_parameter": True,
    "vision_config": {
        "hidden_size": 1024,
        "image_size": 336,
        "intermediate_size": 4096,
        "model_type": "clip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "patch_size": 14,
        "projection_dim": 768,
        "vocab_size": 32000,
    },
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "vocab_size": 32064,
}


@pytest.fixture
def saved_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of a folder as transformers 5 saves it (the tiny model's, compact profile)."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_transformers_5_files_are_rewritten_into_the_4x_shape(saved_model: Path) -> None:
    # Given transformers 5's tokenizer class, list-valued extra tokens and a nested image processor
    assert _json(saved_model / "tokenizer_config.json")["tokenizer_class"] == "TokenizersBackend"
    assert not (saved_model / "preprocessor_config.json").exists()

    # When the folder is exported for serving
    export_for_serving(saved_model, pinpoints=GRID_PINPOINTS["compact"])

    # Then every file has the layout llava-hf/llava-v1.6-mistral-7b-hf ships (which 4.x loads)
    tokenizer = _json(saved_model / "tokenizer_config.json")
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer["extra_special_tokens"] == {"image_token": "<image>"}
    assert "backend" not in tokenizer
    preprocessor = _json(saved_model / "preprocessor_config.json")
    assert preprocessor["image_processor_type"] == "LlavaNextImageProcessor"
    assert preprocessor["image_grid_pinpoints"] == GRID_PINPOINTS["compact"]
    assert preprocessor["crop_size"] == {"height": 336, "width": 336}
    assert _json(saved_model / "processor_config.json") == {
        "image_token": "<image>",
        "num_additional_image_tokens": 1,
        "patch_size": 14,
        "processor_class": "LlavaNextProcessor",
        "vision_feature_select_strategy": "default",
    }
    template = _json(saved_model / "chat_template.json")["chat_template"]
    assert template == (saved_model / "chat_template.jinja").read_text()


def test_exported_folder_still_loads_in_transformers_5(saved_model: Path) -> None:
    from transformers import AutoProcessor

    export_for_serving(saved_model, pinpoints=GRID_PINPOINTS["compact"])
    processor = AutoProcessor.from_pretrained(saved_model)
    assert processor.image_processor.image_grid_pinpoints == GRID_PINPOINTS["compact"]
    assert processor.num_additional_image_tokens == 1
    assert (
        processor.tokenizer.convert_tokens_to_ids("<image>")
        == _json(saved_model / "config.json")["image_token_index"]
    )


def test_base_model_files_are_copied_over_the_saved_ones(saved_model: Path, tmp_path: Path) -> None:
    # Given a base model folder whose tokenizer files differ from the saved ones
    base = Path(shutil.copytree(saved_model, tmp_path / "base"))
    config = _json(base / "tokenizer_config.json")
    config["model_max_length"] = 4096
    (base / "tokenizer_config.json").write_text(json.dumps(config))

    # When exported with that base
    written = export_for_serving(saved_model, pinpoints=GRID_PINPOINTS["compact"], base_model=str(base))

    # Then the base's file is what ships (then normalised), and the list of written files says so
    assert _json(saved_model / "tokenizer_config.json")["model_max_length"] == 4096
    assert "tokenizer.json" in written


def test_a_fine_tune_trained_from_a_staged_base_records_the_fine_tune_profile(
    saved_model: Path, tmp_path: Path
) -> None:
    from classification.model_profile import BASE, FINE_TUNE, PROFILE_FILE, resolve_profile

    # Given a base staged with the base profile's record (tools/stage_base_model.py), and a model trained from it
    base = Path(shutil.copytree(saved_model, tmp_path / "base"))
    (base / PROFILE_FILE).write_bytes(BASE.record())

    # When the training output is exported for serving
    written = export_for_serving(saved_model, pinpoints=GRID_PINPOINTS["compact"], base_model=str(base))

    # Then it is served and evaluated as a fine-tune: the seed's question, confidence routing
    assert PROFILE_FILE in written and resolve_profile(saved_model) is FINE_TUNE
    assert resolve_profile(base) is BASE


def test_pinpoints_that_disagree_with_the_model_config_are_refused(saved_model: Path) -> None:
    with pytest.raises(ValueError, match="model and the processor must agree"):
        export_for_serving(saved_model, pinpoints=GRID_PINPOINTS["stock"])


def test_renamed_tensors_are_caught_before_they_reach_serving(saved_model: Path, tmp_path: Path) -> None:
    # Given a save whose tensor names drifted from the base checkpoint's (the ZeRO-3 save bug's symptom)
    tensors = load_file(saved_model / "model.safetensors")
    drift = ("language_model.model.", "language_model.model.model.")
    renamed = {name.replace(*drift): tensor for name, tensor in tensors.items()}
    broken = Path(shutil.copytree(saved_model, tmp_path / "broken"))
    save_file(renamed, broken / "model.safetensors", metadata={"format": "pt"})

    # Then the check names what is missing and what is unexpected
    with pytest.raises(ValueError, match="tensor names differ from the base checkpoint's") as error:
        check_weight_names(broken, str(saved_model))
    missing = sorted(name for name in tensors if name.startswith(drift[0]))
    assert f"{len(missing)} missing [{missing[0]}, " in str(error.value)
    assert f"{len(missing)} unexpected [{missing[0].replace(*drift)}, " in str(error.value)
    check_weight_names(saved_model, str(saved_model))  # identical names pass


# -- config.json: the RoPE theta and vocabulary every transformers major reads ----------------------------------


def _saved_by_transformers_5(config: dict, folder: Path) -> Path:
    """config.json as training's transformers 5 writes it after loading `config` (rope_parameters only)."""
    from transformers import LlavaNextConfig

    LlavaNextConfig.from_dict(config).save_pretrained(folder)
    return folder


def test_the_real_models_config_reaches_transformers_4_with_its_trained_rope_theta(tmp_path: Path) -> None:
    # Given the real model's config as transformers 5 saves it after training: theta only inside rope_parameters
    saved = _saved_by_transformers_5(HUB_CONFIG, tmp_path / "model")
    text = _json(saved / "config.json")["text_config"]
    assert "rope_theta" not in text and text["rope_parameters"]["rope_theta"] == 1e6
    (before,) = read_with_transformers_4(saved)
    assert before["rope_theta"] == 10000.0  # the defect: 4.x's MistralConfig default, silently

    # When the export writes the serving config
    assert write_text_config_for_both_readers(saved) == ["config.json"]

    # Then the real transformers 4.x, the 4.x reading the smoke test applies and transformers 5 all read the
    # trained theta and vocabulary
    (after,) = read_with_transformers_4(saved)
    assert (after["rope_theta"], after["rope_scaling"], after["vocab_size"]) == (1e6, None, 32064)
    config = _json(saved / "config.json")
    trained = TextGeometry(rope_theta=1e6, rope_type="default", vocab_size=32064)
    assert text_geometry_4x(config) == text_geometry_5x(config) == trained


def test_exported_tiny_model_keeps_mistrals_theta_for_every_reader(saved_model: Path) -> None:
    export_for_serving(saved_model, pinpoints=GRID_PINPOINTS["compact"])

    config = _json(saved_model / "config.json")
    assert config["text_config"]["rope_theta"] == ROPE_THETA == 1e6
    assert config["text_config"]["rope_parameters"] == {"rope_theta": ROPE_THETA, "rope_type": "default"}
    (read,) = read_with_transformers_4(saved_model)
    assert (read["rope_theta"], read["vocab_size"]) == (ROPE_THETA, config["text_config"]["vocab_size"])


def test_a_scaled_rope_is_written_as_4xs_rope_scaling(tmp_path: Path) -> None:
    # Given a model trained with linear RoPE scaling (transformers 5 keeps type and factor in rope_parameters)
    config = json.loads(json.dumps(HUB_CONFIG))
    config["text_config"]["rope_scaling"] = {"rope_type": "linear", "factor": 2.0}
    saved = _saved_by_transformers_5(config, tmp_path / "model")
    assert "rope_scaling" not in _json(saved / "config.json")["text_config"]

    write_text_config_for_both_readers(saved)

    (read,) = read_with_transformers_4(saved)
    assert read["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}
    assert read["rope_theta"] == 1e6
    exported = _json(saved / "config.json")
    assert text_geometry_4x(exported) == text_geometry_5x(exported) == TextGeometry(1e6, "linear", 32064)


def test_the_4x_reading_agrees_with_the_real_transformers_4(tmp_path: Path) -> None:
    # The smoke test reads the served config.json the 4.x way without importing 4.x: hold that reading to the
    # real 4.57.1 on every shape a config.json can have.
    shapes = {
        "5.x only": {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}},
        "both": {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}, "rope_theta": 1e6},
        "4.x only": {"rope_theta": 5e5},
        "4.x scaled, legacy `type`": {"rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 4.0}},
        "defaults": {},
    }
    folders = []
    for index, (name, keys) in enumerate(shapes.items()):
        config = json.loads(json.dumps(HUB_CONFIG))
        text = {k: v for k, v in config["text_config"].items() if k not in ("rope_theta", "vocab_size")}
        config["text_config"] = {**text, **keys}
        folder = tmp_path / f"shape-{index}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        folders.append((name, folder, config))

    real = read_with_transformers_4(*(folder for _, folder, _ in folders))

    for (name, _, config), read in zip(folders, real, strict=True):
        scaling = read["rope_scaling"] or {}
        expected = TextGeometry(
            read["rope_theta"], scaling.get("rope_type", scaling.get("type", "default")), read["vocab_size"]
        )
        assert text_geometry_4x(config) == expected, name
    assert real[0]["rope_theta"] == 10000.0 and real[-1]["vocab_size"] == 32000  # 4.x's class defaults


def test_a_text_model_without_a_known_4x_reading_is_refused(tmp_path: Path) -> None:
    config = json.loads(json.dumps(HUB_CONFIG))
    config["text_config"] = {"model_type": "qwen2", "vocab_size": 1000, "rope_theta": 1e6}
    saved = _saved_by_transformers_5(config, tmp_path / "model")
    with pytest.raises(ValueError, match=r"no transformers 4\.x reading is known for text model_type .qwen2."):
        write_text_config_for_both_readers(saved)
