"""Fine-tuning end to end on CPU: the project's training CLI teaches the tiny model to label colour-coded photos.

The trained model comes from the session fixture `trained_model` (`python -m training_job.train` with the real
config file, three epochs, CPU overrides).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from training_testkit import COLOURS, CPU_TRAINING_ARGS, colour_photo, run_cli

from classification.contract import Taxonomy
from classification.image_tokens import GRID_PINPOINTS
from training_job import evaluate as evaluation
from training_job.serving_export import WeightNamesError, weight_names
from training_job.train import (
    build_trainer,
    check_names_before_training,
    keep_used_weight_conversions,
    make_parser,
)

pytestmark = pytest.mark.slow
CONFIG = "training_job/configs/sft_llava_next.yaml"


def _parse(tiny_model_dir: Path, dataset_dir: Path, tmp_path: Path, *extra: str):  # -> the three dataclasses
    args = ["--config", CONFIG, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(dataset_dir)]
    args += ["--output_dir", str(tmp_path / "out"), *CPU_TRAINING_ARGS, *extra]
    return make_parser().parse_args_and_config(args)


def test_trained_model_labels_held_out_photos(
    trained_model: Path, dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the project's evaluation CLI runs the trained model on the validation split with a 0.9 bar
    args = ["--model-dir", str(trained_model), "--dataset", str(dataset_dir), "--output-dir", str(tmp_path)]
    code = evaluation.main([*args, "--min-accuracy", "0.9", "--no-progress"])

    # Then it passes the bar and writes the metrics, the predictions and the confusion matrix
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert code == 0, capsys.readouterr()
    assert metrics["accuracy"] >= 0.9
    assert metrics["samples"] == 24
    assert set(metrics["per_class"]) == set(COLOURS)
    assert all(c["support"] == 6 for c in metrics["per_class"].values())
    assert metrics["invalid_answers"] == 0
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 24
    assert "eval_accuracy=" in capsys.readouterr().out


def test_saved_directory_reloads_and_answers_in_the_production_format(
    trained_model: Path, taxonomy: Taxonomy
) -> None:
    # Given the saved model loaded the way serving and evaluation load it
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(trained_model)
    model = AutoModelForImageTextToText.from_pretrained(trained_model).eval()
    prompt = processor.apply_chat_template(taxonomy.inference_messages(), add_generation_prompt=True)
    photo = colour_photo("Room", np.random.default_rng(123), (800, 600))

    # When it answers a new Room photo
    inputs = processor(images=[photo], text=[prompt], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    # Then the answer is the seed's sentence, parsed by the production parser, and the profile is compact
    assert taxonomy.parse_label(answer) == "Room"
    assert answer.strip() == "this is a photo of Room."
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 1026
    assert model.config.image_grid_pinpoints == GRID_PINPOINTS["compact"]


def test_training_changed_the_weights_and_logged_a_falling_loss(trained_model: Path, tiny_model_dir: Path) -> None:
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(trained_model / "model.safetensors")
    assert set(after) == set(before)  # same tensor names: the layout the serving image loads
    assert any(not torch.equal(before[name], after[name]) for name in before)
    log = (trained_model.parent / "train.log").read_text()
    # the names were checked before the first step, against the base checkpoint's
    assert f"weight names: the save will write the base checkpoint's {len(before)} tensor names" in log
    losses = [float(line.split("'loss': '")[1].split("'")[0]) for line in log.splitlines() if "'loss': '" in line]
    assert len(losses) >= 3
    assert losses[-1] < losses[0] / 2


def test_trained_output_is_in_the_shape_transformers_4_loads(trained_model: Path, dataset_dir: Path) -> None:
    tokenizer_config = json.loads((trained_model / "tokenizer_config.json").read_text())
    preprocessor = json.loads((trained_model / "preprocessor_config.json").read_text())
    config = json.loads((trained_model / "config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert isinstance(tokenizer_config.get("extra_special_tokens", {}), dict)
    assert preprocessor["image_grid_pinpoints"] == config["image_grid_pinpoints"] == GRID_PINPOINTS["compact"]
    assert (trained_model / "taxonomy.json").read_text() == (dataset_dir / "taxonomy.json").read_text()


def test_loss_mask_covers_only_the_answer(
    tiny_model_dir: Path, dataset_dir: Path, tmp_path: Path, taxonomy: Taxonomy
) -> None:
    # Given the trainer exactly as the entry point builds it from the shipped config
    script_args, training_args, model_args = _parse(tiny_model_dir, dataset_dir, tmp_path)
    trainer = build_trainer(script_args, training_args, model_args)
    rows = [trainer.train_dataset[i] for i in range(2)]

    # When its collator prepares a batch
    batch = trainer.data_collator(rows)

    # Then the only supervised tokens of each row are the answer and the end-of-turn token
    tokenizer = trainer.processing_class.tokenizer
    for row, input_ids, labels in zip(rows, batch["input_ids"], batch["labels"], strict=True):
        supervised = input_ids[labels != -100]
        answer = row["messages"][1]["content"][0]["text"]
        assert tokenizer.decode(supervised).strip() == f"{answer}</s>"
        assert taxonomy.parse_label(answer) in COLOURS
    assert training_args.max_length is None  # nothing truncated: the answer is never cut off


def test_training_refuses_full_sequence_loss(tiny_model_dir: Path, dataset_dir: Path, tmp_path: Path) -> None:
    script_args, training_args, model_args = _parse(
        tiny_model_dir, dataset_dir, tmp_path, "--assistant_only_loss", "false"
    )
    with pytest.raises(ValueError, match="assistant_only_loss must stay true"):
        build_trainer(script_args, training_args, model_args)


def test_the_shipped_config_carries_the_seed_hyper_parameters(tmp_path: Path) -> None:
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        ["--config", CONFIG, "--dataset_name", "data", "--output_dir", str(tmp_path), "--bf16", "false"]
    )
    assert model_args.model_name_or_path == "llava-hf/llava-v1.6-mistral-7b-hf"
    assert training_args.gradient_checkpointing is True
    assert training_args.per_device_train_batch_size == 1
    assert training_args.learning_rate == 2e-5
    assert training_args.num_train_epochs == 20
    assert training_args.warmup_steps == 0.03
    assert training_args.weight_decay == 0.0
    assert training_args.assistant_only_loss is True
    assert training_args.max_length is None
    assert script_args.image_token_profile == "stock"


def test_the_shipped_config_checkpoints_once_per_epoch_and_keeps_the_latest_two(tmp_path: Path) -> None:
    # ~120 GB per ZeRO-3 checkpoint of the 7B model: every 100 steps would write ~25 (docs/training.md's figure)
    _, training_args, _ = make_parser().parse_args_and_config(
        ["--config", CONFIG, "--dataset_name", "data", "--output_dir", str(tmp_path), "--bf16", "false"]
    )
    assert training_args.save_strategy == "epoch"
    assert training_args.save_total_limit == 2


def test_untrained_model_fails_the_accuracy_gate(
    tiny_model_dir: Path, dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the random tiny model, whose answers name no label
    args = ["--model-dir", str(tiny_model_dir), "--dataset", str(dataset_dir), "--output-dir", str(tmp_path)]

    # When evaluated with a bar on the whole validation split (the grammar lets a random model answer a label, but
    # the same one for every photo: chance, well below the bar; a --limit could pick rows of that one label only)
    code = evaluation.main([*args, "--min-accuracy", "0.9", "--no-progress"])

    # Then the gate's exit code says "below the bar" and every free-text answer is counted as invalid
    assert code == evaluation.EXIT_BELOW_BAR
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["invalid_answers"] == metrics["samples"] > 0
    assert "below the bar" in capsys.readouterr().err


def test_evaluation_of_a_dataset_from_another_taxonomy_is_refused(
    trained_model: Path, dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"labels": ["Spa", "Gym"]}))
    args = ["--model-dir", str(trained_model), "--dataset", str(dataset_dir), "--output-dir", str(tmp_path)]
    assert evaluation.main([*args, "--taxonomy", str(other), "--no-progress"]) == evaluation.EXIT_BAD_INPUT
    assert "different taxonomy" in capsys.readouterr().err


def _loaded(model_dir: Path):  # -> LlavaNextForConditionalGeneration
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(model_dir)


def test_zero3s_record_of_every_conversion_tried_is_cut_to_the_ones_the_checkpoint_used(
    tiny_model_dir: Path,
) -> None:
    # Given a model whose conversion record is what transformers' ZeRO-3 loader leaves: every conversion it
    # tried (legacy ones included), each marked by whether a checkpoint key matched it
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.integrations.deepspeed import _apply_weight_conversions_to_state_dict

    model = _loaded(tiny_model_dir)
    tried = get_model_conversion_mapping(model)
    for _ in _apply_weight_conversions_to_state_dict(
        model, load_file(tiny_model_dir / "model.safetensors"), tried
    ):
        pass  # the ZeRO-3 loader's renaming pass, which marks the conversions it used
    model._weight_conversions = tried

    # Then as recorded the save would revert legacy renamings too, and the check says so before training
    with pytest.raises(WeightNamesError, match=r"20 unexpected \[language_model\.model\.model\."):
        check_names_before_training(model, str(tiny_model_dir))

    # When train.py keeps only the conversions the checkpoint used
    keep_used_weight_conversions(model)

    # Then the save will write exactly the base checkpoint's names
    assert check_names_before_training(model, str(tiny_model_dir)) == (
        f"weight names: the save will write the base checkpoint's {len(weight_names(tiny_model_dir))} tensor names"
    )


def test_dropping_the_conversion_record_loses_clips_prefix_and_is_caught_before_training(
    tiny_model_dir: Path,
) -> None:
    # Given what train.py used to do under ZeRO-3: no record of the conversions at all
    model = _loaded(tiny_model_dir)
    model._weight_conversions = None

    # Then the check fails before any step, naming the 39 vision tensors that lost `vision_model.`
    with pytest.raises(WeightNamesError) as error:
        check_names_before_training(model, str(tiny_model_dir))
    message = str(error.value)
    assert "39 missing [vision_tower.vision_model.embeddings.class_embedding, " in message
    assert "39 unexpected [vision_tower.embeddings.class_embedding, " in message


def test_training_from_a_base_whose_names_the_save_cannot_reproduce_stops_before_the_first_step(
    tiny_model_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    # Given a base checkpoint with a tensor the model class does not have (its save would drop it)
    from safetensors.torch import save_file

    base = Path(shutil.copytree(tiny_model_dir, tmp_path / "drifted"))
    tensors = load_file(base / "model.safetensors")
    tensors["multi_modal_projector.linear_3.weight"] = torch.zeros(2, 2)
    save_file(tensors, base / "model.safetensors", metadata={"format": "pt"})

    # When the training CLI starts from it
    result = run_cli(
        [
            "-m",
            "training_job.train",
            "--config",
            CONFIG,
            "--model_name_or_path",
            str(base),
            "--dataset_name",
            str(dataset_dir),
            "--output_dir",
            str(tmp_path / "checkpoints"),
            "--image_token_profile",
            "compact",
            *CPU_TRAINING_ARGS,
        ]
    )

    # Then it fails with the missing name, before any training step or save
    assert result.returncode != 0
    assert (
        "WeightNamesError: the tensor names this training would save differ from the base checkpoint's: "
        "1 missing [multi_modal_projector.linear_3.weight], 0 unexpected []"
    ) in result.stderr
    assert "'loss'" not in result.stdout + result.stderr
    assert not (tmp_path / "checkpoints" / "model.safetensors").exists()
