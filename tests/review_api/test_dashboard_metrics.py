"""The dashboard's review widgets (stacks/review/parts.py) graph exactly metrics this API emits."""

from __future__ import annotations

import json
import os

import pytest

from review_api import inputs
from tests.review_api.review_testkit import LEAD_CLAIMS, OTHER_CLAIMS, Account, FakeContext, seed_photo

NAMESPACE = "HotelPhotos"  # tests/review_api/conftest.py's POWERTOOLS_METRICS_NAMESPACE


def _emitted(stdout: str) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    """(namespace, metric, dimensions) of every EMF blob the handler printed."""
    found = set()
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = frozenset((name, str(blob[name])) for name in dimension_set)
                found |= {(directive["Namespace"], m["Name"], dimensions) for m in directive["Metrics"]}
    return found


def _graphed() -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    """(namespace, metric, dimensions) of every metric row of the review widgets as CloudFormation renders them."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk

    from stacks.review.parts import review_dashboard_widgets

    stack = cdk.Stack(cdk.App(), "Widgets")
    found = set()
    for widget in review_dashboard_widgets(NAMESPACE):
        for row in stack.resolve(widget.to_json())[0]["properties"]["metrics"]:
            plain = [part for part in row if isinstance(part, str)]
            if len(plain) >= 2:
                namespace, name, *pairs = plain
                found.add((namespace, name, frozenset(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


@pytest.mark.slow
def test_every_graphed_review_metric_is_emitted_by_the_api(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    from review_api import handler

    # Given a reviewer who confirms, corrects and rejects, a second reviewer refused on a stale photo, an undo,
    # a lead's override and the scheduled backlog probe
    for name in ("a", "b", "c", "d"):
        seed_photo(account.s3, account.dynamodb, f"uploads/h1/{name}.jpg")
    _, page = account.call("GET", "/api/photos")
    shown = page["photos"]
    capsys.readouterr()
    decided = []
    for photo, body in zip(
        shown,
        ({"decision": "confirm"}, {"decision": "correct", "label": "Spa"}, {"decision": "reject"}),
        strict=False,
    ):
        status, view = account.call(
            "POST", f"/api/photos/{photo['id']}/decision", body={**body, "token": photo["token"]}
        )
        assert status == 200, view
        decided.append(view)
    stale = account.call(
        "POST",
        f"/api/photos/{shown[0]['id']}/decision",
        body={"decision": "reject", "token": shown[0]["token"]},
        claims=OTHER_CLAIMS,
    )
    undone = account.call("POST", f"/api/photos/{shown[1]['id']}/undo", body={"token": decided[1]["token"]})
    overridden = account.call(
        "POST",
        f"/api/photos/{shown[2]['id']}/decision",
        body={"decision": "confirm", "token": decided[2]["token"], "override": True},
        claims=LEAD_CLAIMS,
    )
    assert stale[0] == 409 and undone[0] == 200 and overridden[0] == 200
    handler.lambda_handler({"source": "aws.events", "detail-type": "Scheduled Event"}, FakeContext())

    # Then every metric the dashboard graphs is one of those, with the same namespace and dimensions
    emitted, graphed = _emitted(capsys.readouterr().out), _graphed()
    assert graphed and graphed <= emitted, sorted(graphed - emitted)
    # And one series per decision kind the API accepts
    kinds = {dict(dims)["decision"] for _, name, dims in graphed if name == "ReviewDecisionsByKind"}
    assert kinds == set(inputs.DECISIONS)
