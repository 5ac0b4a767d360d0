"""docs/reference/alarms.md is what `python -m tools.docs` writes from today's templates: rendered here from the
session's synthesised variants (the same context as the generator's) and compared with the committed page."""

from __future__ import annotations

import pytest

from tests.stacks.conftest import ASYNC_MODE, MODEL_URI, PROJECT_ROOT, SCHEDULED_MODE
from tools.docs import alarm_list

# The generator's variants, by the session fixture whose template is the same synth
FIXTURES = {
    "no model yet": ("no_model", {}),
    "realtime": ("with_model", {"photo_labeler.endpoint.model_data_uri": MODEL_URI}),
    "async": ("async_mode", ASYNC_MODE),
    "scheduled": ("scheduled_mode", SCHEDULED_MODE),
}


def test_the_generator_synthesises_the_variants_the_fixtures_do() -> None:
    assert {name: overrides for name, (_fixture, overrides) in FIXTURES.items()} == alarm_list.VARIANTS


@pytest.mark.slow
def test_the_alarm_list_is_current(request: pytest.FixtureRequest) -> None:
    templates = {name: request.getfixturevalue(fixture).json for name, (fixture, _) in FIXTURES.items()}
    page = alarm_list.render(templates)
    committed = (PROJECT_ROOT / alarm_list.PAGE).read_text(encoding="utf-8")
    assert committed == page, "stale: run `python -m tools.docs` and commit the result"
    # Every alarm links to its runbook entry, and the modes differ as the runbook's Exists lines say
    rows = [line for line in page.splitlines() if line.startswith("| ") and not line.startswith("| alarm |")]
    assert len(rows) == 13
    assert all("](../operations.md#" in row for row in rows)
    dlq = next(row for row in rows if "UploadPathDeadLetterQueueAlarm" in row)
    assert dlq.endswith("| yes | yes | yes | yes |")
    async_dlq = next(row for row in rows if "AsyncInferenceDeadLetterQueueAlarm" in row)
    assert async_dlq.endswith("|  |  | yes |  |")
