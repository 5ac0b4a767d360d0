"""The pipeline's request expressions live in named JSONata files (stacks/training_pipeline/*.jsonata).

Their behaviour (defaults, every validation message) is tested on the synthesized state machine in
test_training_pipeline*.py; these tests hold the files and their Python callers together.
"""

from __future__ import annotations

from pathlib import Path

import jsonata
import pytest

from stacks.config import TrainingPipelineConfig
from stacks.training_pipeline import request
from stacks.training_pipeline.request import problems_expression, render, request_expression

BUCKET_URI = "s3://training-bucket/"


def test_every_jsonata_file_is_rendered_with_all_its_placeholders_and_compiles() -> None:
    # Given the package's JSONata files and the functions that render them
    files = sorted(path.stem for path in request.JSONATA_DIR.glob("*.jsonata"))
    rendered = {
        "request": request_expression(
            TrainingPipelineConfig(), name_prefix="photo-labeler", bucket_uri=BUCKET_URI, confidence_threshold=0.8
        ),
        "problems": problems_expression(
            TrainingPipelineConfig(), name_prefix="photo-labeler", bucket_uri=BUCKET_URI
        ),
    }
    # Then each file is used, nothing is left unfilled, and JSONata compiles the one-line result
    assert files == sorted(rendered)
    for name, expression in rendered.items():
        assert expression.startswith("{% (") and expression.endswith(") %}"), name
        assert "{{" not in expression and "/*" not in expression and "\n" not in expression, name
        jsonata.Jsonata(expression[2:-2])


def test_the_request_reads_the_section_and_the_threshold() -> None:
    expression = request_expression(
        TrainingPipelineConfig(instance_count=2, min_accuracy=0.95, hyperparameters={"num_train_epochs": 3}),
        name_prefix="acme",
        bucket_uri=BUCKET_URI,
        confidence_threshold=0.7,
    )
    result = jsonata.Jsonata(expression[2:-2]).evaluate(
        None,
        {"states": {"input": {"dataset_s3_uri": f"{BUCKET_URI}datasets/a/", "run_name": "r1"}, "context": {}}},
    )
    assert result["job_name"] == "acme-r1"
    assert result["instance_count"] == 2 and result["min_accuracy"] == 0.95
    assert result["hyperparameters"] == {
        "num_train_epochs": "3",
        "evaluate": "true",
        "confidence_threshold": "0.7",
    }


def test_a_placeholder_without_a_value_or_a_value_without_a_placeholder_fails_synth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a JSONata file with one placeholder
    (tmp_path / "probe.jsonata").write_text("/* a comment\n   over two lines */\n(\n  $x := {{limit}};\n  $x\n)\n")
    monkeypatch.setattr(request, "JSONATA_DIR", tmp_path)
    # Then it renders with exactly that value, comments dropped and lines joined
    assert render("probe", limit="3") == "{% ($x := 3; $x) %}"
    # And a missing or an extra value names the file and both sides
    with pytest.raises(ValueError, match=r"probe\.jsonata: placeholders \['limit'\] but values for \[\]"):
        render("probe")
    with pytest.raises(ValueError, match=r"values for \['limit', 'other'\]"):
        render("probe", limit="3", other="4")
