"""The tiny LLaVA-NeXT stands in for the real model: same geometry, template and config traps, loadable offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from classification.contract import Taxonomy
from classification.image_tokens import GRID_PINPOINTS
from training_job.tiny_model import VLLM_CPU_HEAD_SIZES, build_tiny_model, hub_weight_name, main

# The top-level tensor name prefixes of llava-hf/llava-v1.6-mistral-7b-hf's safetensors (its index.json).
HUB_PREFIXES = {
    "vision_tower.vision_model.",
    "language_model.model.",
    "language_model.lm_head.",
    "multi_modal_projector.",
    "image_newline",
}


def _saved_names(model_dir: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as file:
        return list(file.keys())


def test_tiny_model_saves_the_llava_hf_checkpoint_names(tiny_model_dir: Path) -> None:
    # Given the weights file the tiny model was saved with
    names = _saved_names(tiny_model_dir)

    # Then every tensor sits under one of the hub checkpoint's prefixes, and every prefix is there
    unmatched = [name for name in names if not any(name.startswith(prefix) for prefix in HUB_PREFIXES)]
    assert unmatched == []
    assert {prefix for prefix in HUB_PREFIXES if any(name.startswith(prefix) for name in names)} == HUB_PREFIXES
    assert "vision_tower.vision_model.embeddings.patch_embedding.weight" in names
    assert "language_model.model.layers.0.self_attn.q_proj.weight" in names
    assert "language_model.lm_head.weight" in names


def test_tiny_model_text_head_size_is_one_vllm_cpu_attention_supports(tiny_model_dir: Path) -> None:
    # Given the saved text config
    text = json.loads((tiny_model_dir / "config.json").read_text())["text_config"]

    # Then its attention head size (explicit, and as hidden / heads) is one vLLM's CPU kernels exist for
    assert text["head_dim"] == text["hidden_size"] // text["num_attention_heads"]
    assert text["head_dim"] in VLLM_CPU_HEAD_SIZES
    # grouped-query attention like Mistral-7B's, so serving exercises the same KV-head path
    assert text["num_key_value_heads"] < text["num_attention_heads"]


def test_tiny_model_loads_offline_with_every_weight_matched(tiny_model_dir: Path) -> None:
    # Given the hub-named checkpoint
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    saved = load_file(str(tiny_model_dir / "model.safetensors"))

    # When transformers loads it (HF_HUB_OFFLINE=1 for the whole session)
    model, info = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, output_loading_info=True)

    # Then no tensor is missing, unexpected or mismatched, and each loaded value is the saved one
    assert {key: value for key, value in info.items() if value} == {}
    loaded = {hub_weight_name(name): tensor for name, tensor in model.state_dict().items()}
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[name], saved[name]) for name in saved)


def test_an_unknown_tensor_name_has_no_hub_name() -> None:
    with pytest.raises(ValueError, match=r"no llava-hf checkpoint name for the tensor 'model\.extra\.weight'"):
        hub_weight_name("model.extra.weight")


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
