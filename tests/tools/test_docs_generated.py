"""The generated documentation pages are what their generator writes today (`python -m tools.docs` regenerates
them): the configuration reference, the command-line reference and the cost chart. The alarm list, which needs the
synthesised templates, is held by tests/stacks/monitoring/test_alarm_list.py."""

from __future__ import annotations

import dataclasses
import io
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tools.docs import cli_reference, config_reference, cost_chart
from tools.docs.pages import GENERATED, PROJECT_ROOT, Generated, run, stale

REGENERATE = "stale: run `python -m tools.docs` and commit the result"


def _generated(path: str) -> Generated:
    return next(g for g in GENERATED if g.path == path)


def test_the_configuration_reference_is_current() -> None:
    assert not stale(_generated(config_reference.PAGE)), REGENERATE


@pytest.mark.slow
def test_the_cli_reference_is_current() -> None:
    # Imports every command (training's pulls in TRL and torch): a few seconds
    assert not stale(_generated(cli_reference.PAGE)), REGENERATE


def test_the_cost_chart_is_current() -> None:
    assert not stale(_generated(cost_chart.PAGE)), REGENERATE


def test_a_stale_page_fails_the_check_and_names_itself(tmp_path: Path) -> None:
    # Given a committed page that no longer matches its generator
    page = Generated("docs/reference/example.md", lambda: "# Example\n\nnew text\n", "an example")
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / page.path).write_text("# Example\n\nold text\n")
    out = io.StringIO()
    # When checked, it is reported and nothing is written; when generated, it is rewritten
    assert run([page], check=True, out=out, root=tmp_path) == 1
    assert "docs/reference/example.md: an example ... STALE" in out.getvalue()
    assert (tmp_path / page.path).read_text() == "# Example\n\nold text\n"
    assert run([page], check=False, out=io.StringIO(), root=tmp_path) == 0
    assert run([page], check=True, out=io.StringIO(), root=tmp_path) == 0


def test_every_config_key_has_a_description_in_the_reference() -> None:
    # A key added without a docstring under its field would show an empty description
    assert config_reference.undocumented() == []
    page = (PROJECT_ROOT / config_reference.PAGE).read_text()
    assert "| `endpoint_5xx_alarm_threshold` | integer | `5` | ≥ 1 | Endpoint 5xx responses" in page
    assert '| `mode` | string | `"realtime"` | `realtime`, `async`, `scheduled` |' in page
    assert "| `instance_count` | integer | `1` | 1\N{EN DASH}`max_instance_count` |" in page


def test_a_field_without_a_docstring_is_found() -> None:
    # Negative control of the check above
    @dataclasses.dataclass(frozen=True)
    class Section:
        described: int = 1
        """Says what it is."""
        silent: int = 2

    assert config_reference.field_docs(Section) == {"described": "Says what it is."}


def test_every_command_the_project_ships_is_in_the_cli_reference() -> None:
    # A new `python -m` entry point under tools/, training_job/, labelling_job/, scripts/, review_api/ or
    # model_code/ must be listed in tools/docs/cli_reference.py, or this fails naming it
    listed = {command.module for command in cli_reference.COMMANDS}
    assert cli_reference.runnable_modules() == listed


def test_the_cli_reference_reads_a_commands_own_parser() -> None:
    parser = cli_reference.parser_of_main("tools.redrive")()
    lines = "\n".join(cli_reference.render_parser(parser))
    assert lines.startswith("## `python -m tools.redrive`")
    assert "### `python -m tools.redrive start`" in lines
    assert "`--max-per-second" in lines


def test_the_cost_chart_draws_the_cost_models_lines_and_references() -> None:
    data = cost_chart.figures()
    svg = ElementTree.fromstring(cost_chart.render(data))  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    lines = svg.findall(f"{ns}polyline")
    assert len(lines) == len(cost_chart.MODES) == 3
    assert all(len(line.get("points", "").split()) == len(cost_chart.VOLUMES) for line in lines)
    labels = [text.text for text in svg.iter(f"{ns}text")]
    # The reference lines are the backlog estimate's seed row ($0.26) and GPT-4o at the seed's arithmetic ($5.45)
    assert "seed, measured $0.26" in labels
    assert "GPT-4o $5.45" in labels
    # Scheduled is the cheapest mode at every volume charted, as the volumes report says
    for (_, real_time), (_, scheduled) in zip(data["lines"]["real_time"], data["lines"]["scheduled"], strict=True):
        assert scheduled < real_time


@pytest.mark.slow
def test_no_generated_page_depends_on_this_machine() -> None:
    # Paths are shown relative to the project, defaults that read AWS_* variables without them: the committed
    # pages are the same wherever they are regenerated (the staleness tests compare bytes)
    for generated in GENERATED:
        if generated.path.endswith("alarms.md"):
            continue  # needs a synth; tests/stacks/monitoring/test_alarm_list.py
        text = generated.render()
        assert str(PROJECT_ROOT) not in text, generated.path
        assert text == generated.render(), generated.path
