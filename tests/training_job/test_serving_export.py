"""The saved model folder is rewritten into the file shapes the serving image's transformers 4.x reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from classification.image_tokens import GRID_PINPOINTS
from training_job.serving_export import check_weight_names, export_for_serving


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
