"""A tiny, randomly initialised LLaVA-NeXT that stands in for llava-hf/llava-v1.6-mistral-7b-hf in tests.

It keeps everything the training and serving code depends on — the real image geometry (336-px CLIP tiles,
14-px patches, `default` feature selection with one extra token), the profile's `image_grid_pinpoints` in both
the model and the processor config, and the real chat template — and shrinks only what costs time: 2 vision
and 2 text layers, small hidden sizes, and a byte-level BPE vocabulary of a few hundred tokens trained offline on
the taxonomy's own prompt and answers (a 32k vocabulary makes TRL's CPU loss 25-40x slower).

Three things the serving stack depends on are kept faithful on purpose:
- the weights are saved under the llava-hf checkpoint's tensor names (`vision_tower.vision_model.*`,
  `language_model.model.*`, `language_model.lm_head.*`, `multi_modal_projector.*`, `image_newline`), the layout
  vLLM's LLaVA-NeXT loader and the transformers 4.x in the serving image expect, and the layout training has to
  reproduce when it saves (a model built from a config would save `vision_tower.*` without `vision_model.`);
- the text attention head size is 32, one that vLLM's CPU attention supports (it refuses 16);
- the RoPE theta is Mistral-7B-Instruct-v0.2's 1,000,000, so a loader that reads the class default instead is seen.

    python -m training_job.tiny_model OUTPUT_DIR [--taxonomy classification/taxonomy.json] [--profile compact]

Nothing is downloaded: it builds in well under a second and loads with AutoModelForImageTextToText /
AutoProcessor `from_pretrained(OUTPUT_DIR)` with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classification.contract import Taxonomy
from classification.image_tokens import GRID_PINPOINTS

# The real model's processor geometry and normalisation (llava-v1.6-mistral-7b-hf preprocessor_config.json).
CROP_SIZE = 336  # pixels: the CLIP ViT-L/14-336 tile
PATCH_SIZE = 14  # pixels
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", PAD_TOKEN, IMAGE_TOKEN]
# Byte-level BPE keeps every string encodable (no <unk>), so free-form generations still decode.
VOCAB_SIZE = 512
# vLLM's CPU attention kernels exist for these head sizes only ("Unsupported CPU attention configuration").
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
TEXT_HIDDEN_SIZE = 64
TEXT_HEADS = 2  # head size 64 / 2 = 32: the smallest vLLM's CPU attention takes
TEXT_KV_HEADS = 1  # grouped-query attention, as in Mistral-7B (32 query heads, 8 key/value heads)
# The real model's text_config.rope_theta, not the class default 10,000: a loader that falls back to the default
# (transformers 4.x reading a 5.x-shaped config.json) then gets a different number.
ROPE_THETA = 1_000_000.0

# How the llava-hf checkpoint names what transformers 5 holds in memory, first match wins. transformers 5 flattens
# CLIPVisionModel (no `vision_model.` level) and moves the submodels under `model.`; it renames back on load.
HUB_NAME_PREFIXES = (
    ("lm_head.", "language_model.lm_head."),
    ("model.language_model.", "language_model.model."),
    ("model.vision_tower.", "vision_tower.vision_model."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.image_newline", "image_newline"),
)


def _tokenizer_corpus(taxonomy: Taxonomy) -> list[str]:
    # The chat template's literal pieces plus every prompt/answer the model will see.
    pieces = ["[INST] ", " [/INST]", "<<SYS>>\n", "\n<</SYS>>\n\n", taxonomy.prompt]
    pieces += taxonomy.choices  # what the model generates, leading space included
    return pieces * 4


def build_tokenizer(taxonomy: Taxonomy):  # -> transformers.PreTrainedTokenizerFast
    """A byte-level BPE tokenizer trained on the taxonomy's text, with Mistral's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_tokenizer_corpus(taxonomy), trainer=trainer)
    # Like Mistral's tokenizer: BOS on plain encodes; the chat template path passes add_special_tokens=False.
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token=PAD_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",  # the real model's choice; generation pads on the left
        model_max_length=32768,
    )
    return tokenizer


def hub_weight_name(name: str) -> str:
    """The llava-hf checkpoint's name for an in-memory LlavaNextForConditionalGeneration tensor name."""
    for memory_prefix, hub_prefix in HUB_NAME_PREFIXES:
        if name.startswith(memory_prefix):
            return hub_prefix + name[len(memory_prefix) :]
    raise ValueError(f"no llava-hf checkpoint name for the tensor {name!r}: the LLaVA-NeXT layout changed")


def save_hub_layout_weights(model, output: Path) -> list[str]:  # model: LlavaNextForConditionalGeneration
    """Write model.safetensors under the llava-hf names (what the serving stack loads); returns the names."""
    from safetensors.torch import save_file

    tensors = {hub_weight_name(name): tensor.contiguous() for name, tensor in model.state_dict().items()}
    for stale in output.glob("model*.safetensors*"):
        stale.unlink()  # a sharded or differently named save would shadow or contradict this file
    save_file(tensors, str(output / "model.safetensors"), metadata={"format": "pt"})
    return sorted(tensors)


def build_tiny_model(output_dir: str | Path, taxonomy: Taxonomy, *, profile: str = "compact") -> Path:
    """Save a random tiny LLaVA-NeXT + processor for `profile` ("stock" or "compact") into output_dir."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )
    from trl.chat_template_utils import llava_next_chat_template

    if profile not in GRID_PINPOINTS:
        raise ValueError(f"unknown image-token profile {profile!r}; choose one of {sorted(GRID_PINPOINTS)}")
    pinpoints = GRID_PINPOINTS[profile]
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(taxonomy)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": CROP_SIZE},
        crop_size={"height": CROP_SIZE, "width": CROP_SIZE},
        image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        # CLIP's CLS token: the processor and the model both drop it with the "default" strategy.
        num_additional_image_tokens=1,
        chat_template=llava_next_chat_template,
    )

    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=CROP_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN_SIZE,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_KV_HEADS,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)  # the same "random" model every time: test failures reproduce
    model = LlavaNextForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    head_size = config.text_config.head_dim
    if head_size not in VLLM_CPU_HEAD_SIZES:
        raise ValueError(f"text head size {head_size} is not one vLLM's CPU attention takes {VLLM_CPU_HEAD_SIZES}")
    model.save_pretrained(output)  # config.json and generation_config.json
    save_hub_layout_weights(model, output)  # replaces the weights save_pretrained wrote under transformers-5 names
    processor.save_pretrained(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training_job.tiny_model",
        description="Build a tiny random LLaVA-NeXT (offline, < 1 s) for tests and local dry runs.",
    )
    parser.add_argument("output_dir", type=Path, help="directory to write config, weights and processor into")
    parser.add_argument("--taxonomy", type=Path, default=None, help="taxonomy JSON (default: the shipped one)")
    parser.add_argument("--profile", choices=sorted(GRID_PINPOINTS), default="compact", help="image-token profile")
    args = parser.parse_args(argv)
    taxonomy = Taxonomy.load(args.taxonomy) if args.taxonomy else Taxonomy.load()
    path = build_tiny_model(args.output_dir, taxonomy, profile=args.profile)
    print(f"tiny LLaVA-NeXT ({args.profile} profile, {len(taxonomy.labels)} labels) saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
