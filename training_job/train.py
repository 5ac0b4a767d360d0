"""Fine-tune LLaVA-NeXT on the hotel-photo dataset with TRL's SFTTrainer (the shape of TRL's sft_vlm.py).

On SageMaker, `training_job/launch.py` runs this for every GPU and host. By hand, from the repository root:

    accelerate launch --config_file training_job/configs/accelerate_zero3.yaml -m training_job.train \
        --config training_job/configs/sft_llava_next.yaml \
        --dataset_name DATASET_DIR --output_dir CHECKPOINT_DIR --final_model_dir MODEL_DIR \
        --image_token_profile compact

DATASET_DIR is what `python -m training_job.build_dataset` wrote (a DatasetDict saved to disk) or a Hub dataset
name. Any SFTConfig / ModelConfig field can be overridden on the command line (`--num_train_epochs 3`).
The final model goes to MODEL_DIR (default: CHECKPOINT_DIR) in the layout the serving image loads.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from classification.image_tokens import DEFAULT_PROFILE, GRID_PINPOINTS
from training_job.rank_zero import on_rank_zero
from training_job.serving_export import base_weight_names, compare_weight_names, export_for_serving


@dataclass
class PhotoScriptArguments(ScriptArguments):
    dataset_test_split: str = field(default="validation", metadata={"help": "Split used for evaluation."})
    image_token_profile: str = field(
        default=DEFAULT_PROFILE,
        metadata={
            "help": "Image-token profile written into the model and processor config (stock: the base model's "
            "anyres grid, ~2,340 tokens per 4:3 photo; compact: one 336-px tile, ~1,026 tokens).",
            "choices": sorted(GRID_PINPOINTS),
        },
    )
    final_model_dir: str | None = field(
        default=None,
        metadata={"help": "Where the servable model is saved (default: output_dir, beside the checkpoints)."},
    )


def load_dataset_dict(name: str, config: str | None = None):  # -> datasets.DatasetDict
    from datasets import load_dataset, load_from_disk

    if (Path(name) / "dataset_dict.json").is_file():
        return load_from_disk(name)
    return load_dataset(name, name=config)


def build_trainer(
    script_args: PhotoScriptArguments, training_args: SFTConfig, model_args: ModelConfig
) -> SFTTrainer:
    """Model, processor (with the profile applied) and dataset wired into an SFTTrainer."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.integrations import is_deepspeed_zero3_enabled
    from trl.chat_template_utils import llava_next_chat_template

    if not training_args.assistant_only_loss:
        # Measured: with the loss on the whole sequence the loss looks healthy and accuracy stays at chance.
        raise ValueError("assistant_only_loss must stay true: the model has to learn the answer, not the prompt")
    training_args.max_length = None  # truncation would cut the image tokens or silently drop the answer
    pinpoints = GRID_PINPOINTS[script_args.image_token_profile]

    # Model
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=model_args.dtype,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
        image_grid_pinpoints=pinpoints,  # the model and the processor must agree, or forward() fails
    )
    if is_deepspeed_zero3_enabled():
        keep_used_weight_conversions(model)
    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    processor.image_processor.image_grid_pinpoints = pinpoints
    if not processor.chat_template:
        processor.chat_template = llava_next_chat_template

    # Dataset
    dataset = load_dataset_dict(script_args.dataset_name, script_args.dataset_config)
    eval_split = script_args.dataset_test_split if training_args.eval_strategy != "no" else None

    # Training
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=dataset[eval_split] if eval_split else None,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    return trainer


def keep_used_weight_conversions(model) -> None:  # model: transformers.PreTrainedModel
    """Make a ZeRO-3 save revert exactly the renamings the base checkpoint needed on load.

    transformers 5.24's ZeRO-3 loader records every conversion it tried as `model._weight_conversions`, so
    save_pretrained would revert renamings the checkpoint never needed (legacy ones:
    `language_model.model.model.*`).
    Dropping the record (`None`) is no better: saving then falls back to the model's own mapping minus its prefix
    rules, and CLIPVisionModel's `vision_model.` prefix is lost (`vision_tower.*` for the hub's
    `vision_tower.vision_model.*`). The loader marks each conversion that matched a checkpoint key, as the
    single-process loader does before it keeps only those: keep the same subset.
    """
    conversions = getattr(model, "_weight_conversions", None)
    if conversions is not None:
        model._weight_conversions = [conversion for conversion in conversions if conversion.was_used()]


def names_to_be_saved(model) -> set[str]:  # model: transformers.PreTrainedModel
    """The tensor names `save_pretrained` will write for `model`, computed as its save path does (no I/O)."""
    from transformers.core_model_loading import revert_weight_conversion

    skipped = set(model._keys_to_ignore_on_save or ()) | set(getattr(model, "all_tied_weights_keys", None) or ())
    state = {name: tensor for name, tensor in model.state_dict().items() if name not in skipped}
    return set(revert_weight_conversion(model, state))


def check_names_before_training(model, base_model: str, revision: str | None = None) -> str:
    """Fail in seconds, before the first step, if the save would not reproduce the base checkpoint's names.

    The same comparison runs again on the saved files (serving_export.check_weight_names); this one costs a
    minute of a booked cluster instead of a whole training run. Returns a line for the log.
    """
    base = base_weight_names(base_model, revision)
    if base is None:
        return f"weight names: not checked before training (no local safetensors for {base_model})"
    compare_weight_names(names_to_be_saved(model), base, what="the tensor names this training would save")
    return f"weight names: the save will write the base checkpoint's {len(base)} tensor names"


def main(script_args: PhotoScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> Path:
    from transformers.trainer_utils import get_last_checkpoint

    trainer = build_trainer(script_args, training_args, model_args)
    pinpoints = GRID_PINPOINTS[script_args.image_token_profile]
    names = check_names_before_training(trainer.model, model_args.model_name_or_path, model_args.model_revision)
    trainer.accelerator.print(names)
    state = trainer.accelerator.state
    trainer.accelerator.print(
        f"{state.distributed_type.value} x{state.num_processes} (ZeRO stage "
        f"{state.deepspeed_plugin.zero_stage if state.deepspeed_plugin else '-'}), "
        f"{len(trainer.train_dataset)} training rows, {script_args.image_token_profile} image-token profile"
    )
    resume = training_args.resume_from_checkpoint
    if resume is None and Path(training_args.output_dir).is_dir():
        # A spot interruption restarts the job with the synced checkpoint folder: carry on from it.
        resume = get_last_checkpoint(training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)

    final_dir = Path(script_args.final_model_dir or training_args.output_dir)
    trainer.save_model(str(final_dir))  # ZeRO-3 gathers full 16-bit weights (ds config) on save

    def export() -> None:
        written = export_for_serving(
            final_dir,
            pinpoints=pinpoints,
            base_model=model_args.model_name_or_path,
            revision=model_args.model_revision,
        )
        taxonomy = Path(script_args.dataset_name, "taxonomy.json")
        if taxonomy.is_file():
            # The labels travel with the model: serving and the pipeline can check they match.
            shutil.copyfile(taxonomy, final_dir / "taxonomy.json")
        trainer.accelerator.print(
            f"Model saved to {final_dir} ({script_args.image_token_profile} profile; "
            f"serving files: {', '.join(written)})"
        )

    # Not a barrier: a failed export must stop every rank now, not after the process group's timeout.
    on_rank_zero(export, what="the export for serving")
    trainer.end()
    return final_dir


def make_parser() -> TrlParser:
    return TrlParser((PhotoScriptArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    main(script_args, training_args, model_args)
