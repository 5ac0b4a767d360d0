"""The tiny LLaVA-NeXT stands in for the real model: same geometry, template and config traps, loadable offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from classification.contract import Taxonomy
from classification.image_tokens import GRID_PINPOINTS
from training_job.tiny_model import build_tiny_model, main


def test_tiny_model_loads_with_auto_classes_and_runs_a_photo(tiny_model_dir: Path, taxonomy: Taxonomy) -> None:
    # Given the tiny model saved by build_tiny_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    prompt = processor.apply_chat_template(taxonomy.inference_messages(), add_generation_prompt=True)

    # When a 4:3 photo goes through processor and model
    inputs = processor(
        images=[Image.new("RGB", (800, 600), "red")], text=[prompt], return_tensors="pt", add_special_tokens=False
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False)

    # Then the compact profile's 1,026 image tokens match the model's features (no off-by-one) and it generates
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 1026
    assert output.shape[1] == inputs["input_ids"].shape[1] + 3


def test_tiny_model_carries_the_real_models_config_traps(tiny_model_dir: Path) -> None:
    # Given the saved config and processor files
    from transformers import AutoProcessor
    from trl.chat_template_utils import llava_next_chat_template

    config = json.loads((tiny_model_dir / "config.json").read_text())
    processor = AutoProcessor.from_pretrained(tiny_model_dir)

    # Then pinpoints agree, the CLS token is accounted for and the template is TRL's LLaVA-NeXT template
    assert config["image_grid_pinpoints"] == GRID_PINPOINTS["compact"]
    assert processor.image_processor.image_grid_pinpoints == GRID_PINPOINTS["compact"]
    assert config["vision_feature_select_strategy"] == processor.vision_feature_select_strategy == "default"
    assert processor.num_additional_image_tokens == 1
    assert processor.chat_template == llava_next_chat_template
    # <image> and <pad> are single tokens; the vocabulary stays small so CPU training is fast
    assert len(processor.tokenizer.tokenize("<image>")) == 1
    assert processor.tokenizer.pad_token == "<pad>"
    assert config["text_config"]["vocab_size"] <= 1024


def test_tiny_model_cli_builds_the_stock_profile(tmp_path: Path, taxonomy_file: Path) -> None:
    # When the CLI builds the stock profile
    code = main([str(tmp_path / "stock"), "--taxonomy", str(taxonomy_file), "--profile", "stock"])

    # Then model and processor carry the stock grid
    assert code == 0
    config = json.loads((tmp_path / "stock" / "config.json").read_text())
    processor_config = json.loads((tmp_path / "stock" / "processor_config.json").read_text())
    assert config["image_grid_pinpoints"] == GRID_PINPOINTS["stock"]
    assert processor_config["image_processor"]["image_grid_pinpoints"] == GRID_PINPOINTS["stock"]


def test_unknown_profile_is_refused(tmp_path: Path, taxonomy: Taxonomy) -> None:
    with pytest.raises(ValueError, match="unknown image-token profile 'huge'"):
        build_tiny_model(tmp_path, taxonomy, profile="huge")
