"""`python -m scripts.demo --review`: the review page served on the demo's own emulated table and bucket."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from local_aws.emulation import LocalAws
from scripts import demo
from tests.review_api.review_testkit import seed_photo


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


@pytest.fixture
def emulated() -> Any:
    # The demo's own emulation: moto's server with the stack's bucket, queue and labels table (both indexes).
    # moto keeps its accounts per process, not per server: each test gets its own names.
    suffix = uuid.uuid4().hex[:8]
    with LocalAws(
        bucket=f"photo-labeler-images-{suffix}",
        table=f"photo-labeler-labels-{suffix}",
        queue_name=f"photo-labeler-uploads-{suffix}",
        upload_prefix="uploads/",
        max_receive_count=5,
    ) as aws:
        yield aws


def test_the_review_page_serves_the_demos_unsure_labels_until_the_wait_ends(
    emulated: LocalAws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the demo's table after labelling: two unsure labels and a confident one, and the demo's taxonomy
    aws = emulated
    for minute, name in enumerate(("a", "b")):
        seed_photo(
            aws.s3,
            aws.dynamodb,
            f"uploads/hotel-0001/{name}.jpg",
            label="Pool",
            confidence=0.41 + minute / 100,
            classified_at=f"2026-11-30T09:0{minute}:00.000+00:00",
            bucket=aws.bucket,
            table=aws.table,
        )
    seed_photo(
        aws.s3,
        aws.dynamodb,
        "uploads/hotel-0001/sure.jpg",
        label="Room",
        confidence=0.97,
        status="LABELED",
        bucket=aws.bucket,
        table=aws.table,
    )
    taxonomy_file = tmp_path / "taxonomy.json"
    taxonomy_file.write_text(json.dumps({"labels": ["Pool", "Room", "Lobby"]}))
    seen: dict[str, Any] = {}

    def browse(url: str) -> None:
        seen["url"] = url
        seen["page"] = _get(url)
        seen["labels"] = json.loads(_get(url + "api/labels")[1])
        seen["queue"] = json.loads(_get(url + "api/photos")[1])
        seen["photo"] = _get(seen["queue"]["photos"][0]["photo_url"])

    # When the demo serves the page and a reviewer opens it
    demo.serve_review_page(aws, taxonomy_file=taxonomy_file, wait=browse)

    # Then the URL was printed with the number of photos waiting, and the page is the review page in local mode
    out = capsys.readouterr().out
    assert f"2 photo(s) wait for a reviewer: open {seen['url']}" in out
    status, page = seen["page"]
    assert status == 200 and b"app.js" in page
    # And the queue is exactly the unsure labels, oldest first, with the demo's labels for the type-ahead
    assert seen["labels"]["labels"] == ["Pool", "Room", "Lobby"]
    queue = seen["queue"]
    assert [p["image_uri"] for p in queue["photos"]] == [
        f"s3://{aws.bucket}/uploads/hotel-0001/a.jpg",
        f"s3://{aws.bucket}/uploads/hotel-0001/b.jpg",
    ]
    assert {p["status"] for p in queue["photos"]} == {"NEEDS_REVIEW"}
    # And the photo itself loads from the emulated bucket (a presigned URL of the labelled version)
    status, photo = seen["photo"]
    assert status == 200 and photo[:2] == b"\xff\xd8"
    # And once the wait is over the page is stopped
    with pytest.raises(urllib.error.URLError):
        _get(seen["url"])


def test_ctrl_c_stops_the_page_and_the_demo_carries_on(
    emulated: LocalAws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taxonomy_file = tmp_path / "taxonomy.json"
    taxonomy_file.write_text(json.dumps({"labels": ["Pool", "Room"]}))
    seen: list[str] = []

    def interrupted(url: str) -> None:
        seen.append(url)
        raise KeyboardInterrupt

    # When the user presses Ctrl-C while the page is served
    demo.serve_review_page(emulated, taxonomy_file=taxonomy_file, wait=interrupted)

    # Then serve_review_page returns normally (the demo prints its summary and cleans up) and the page is down
    assert "0 photo(s) wait for a reviewer" in capsys.readouterr().out
    with pytest.raises(urllib.error.URLError):
        _get(seen[0])


def test_a_decision_on_the_demos_page_is_recorded_without_a_metrics_namespace(
    emulated: LocalAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a shell without POWERTOOLS_METRICS_NAMESPACE (Lambda sets it; `python -m scripts.demo --review` not)
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    aws = emulated
    seed_photo(
        aws.s3,
        aws.dynamodb,
        "uploads/hotel-0001/a.jpg",
        label="Pool",
        confidence=0.41,
        bucket=aws.bucket,
        table=aws.table,
    )
    taxonomy_file = tmp_path / "taxonomy.json"
    taxonomy_file.write_text(json.dumps({"labels": ["Pool", "Room"]}))
    seen: dict[str, Any] = {}

    def decide(url: str) -> None:
        (photo,) = json.loads(_get(url + "api/photos")[1])["photos"]
        body = json.dumps({"decision": "correct", "label": "Room", "token": photo["token"]}).encode()
        request = urllib.request.Request(
            f"{url}api/photos/{photo['id']}/decision", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            seen["decision"] = response.status, json.loads(response.read())
        seen["queue"] = json.loads(_get(url + "api/photos")[1])["photos"]

    # When the reviewer corrects the photo on the demo's page
    demo.serve_review_page(aws, taxonomy_file=taxonomy_file, wait=decide)

    # Then the decision answers 200 (no metrics namespace error after the write), and the photo left the queue
    status, view = seen["decision"]
    assert status == 200 and (view["decision"], view["human_label"]) == ("correct", "Room")
    assert seen["queue"] == []


def test_the_demo_documents_the_review_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--review" in capsys.readouterr().out
