"""Decisions on photos: confirm / correct / reject, a lead's override, undo; each one also an entry in the
append-only history table. No boto3 here (the table is review_api/core.py's LabelTable).

Rules (docs/review.md):
- A decision is written only if the photo is still in the state it was shown in (its `token`), and nobody else
  holds its lease; otherwise 409 naming what changed and who.
- A photo another reviewer decided can only be decided again by a lead who asks for it (`override: true`):
  anyone else gets 409 however fresh their token. Re-deciding one's own decision is a change of mind, allowed.
- Undo takes back the latest change if it was the caller's own decision or override, and restores exactly what that
  change replaced: the model's result, or the decision a lead's override replaced. Undo is itself an entry.
- History entries (table `<prefix>-review-history`, key image_uri + seq): `seq` 1, 2, ... per photo, `at`,
  `action` (decide | override | undo), `by` (e-mail), `by_sub`, `decision`, `human_label`, `status` (after the
  change), `replaced` ({status, decision?, human_label?, by?, by_sub?, at?}: the state before it), `undoes`
  (the seq an undo took back), and what was shown: `model_label`, `confidence`, `model`, `classified_at`. The
  photo's item and its entry are written in one transaction; an entry's seq is written once (attribute_not_exists).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from review_api.identity import Reviewer
from review_api.inputs import (
    DECISIONS,
    REVIEW_REJECTED,
    REVIEWED,
    BadRequest,
    Conflict,
    Expected,
    NotFound,
    ReviewError,
    expected_of,
    image_uri_of,
)

if TYPE_CHECKING:
    from review_api.core import LabelTable

# The attribute whose presence marks a human decision; the labeller checks the same name (labeller_core).
DECISION_ATTRIBUTE = "review_decision"
REVIEW_ATTRIBUTES = (
    DECISION_ATTRIBUTE,
    "human_label",
    "reviewed_by",
    "reviewed_by_sub",
    "reviewed_at",
    "status_before_review",
)
LEASE_ATTRIBUTES = ("lease_sub", "lease_by", "lease_until")
MAX_BATCH = 50  # decisions per batch request (a grid page holds at most 24)


def _decided_state(item: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an item a history entry records as replaced (or an undo restores)."""
    state: dict[str, Any] = {"status": item.get("status")}
    if item.get(DECISION_ATTRIBUTE):
        state |= {
            "decision": item.get(DECISION_ATTRIBUTE),
            "human_label": item.get("human_label"),
            "by": item.get("reviewed_by"),
            "by_sub": item.get("reviewed_by_sub"),
            "at": item.get("reviewed_at"),
        }
    return state


def _describe(item: Mapping[str, Any]) -> str:
    what = str(item.get(DECISION_ATTRIBUTE))
    if item.get("human_label"):
        what += f" as {item['human_label']}"
    return f"{item.get('reviewed_by')} at {item.get('reviewed_at')} ({what})"


def _shown(expected: Expected, item: Mapping[str, Any]) -> bool:
    return (expected.status, expected.classified_at, expected.reviewed_at) == (
        item.get("status"),
        item.get("classified_at"),
        item.get("reviewed_at") or None,
    )


class Decisions:
    def __init__(
        self,
        *,
        table: LabelTable,
        labels: tuple[str, ...],
        view: Callable[..., dict[str, Any]],
        now: Callable[[], str],
    ) -> None:
        self._table = table
        self._labels = labels
        self._view = view
        self._now = now

    def decide(self, photo: str, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        """Record confirm / correct / reject (an override, for a lead who asks) if the photo is as it was shown."""
        uri = image_uri_of(photo)
        if not isinstance(body, Mapping):
            raise BadRequest("the request body must be a JSON object")
        decision = body.get("decision")
        if decision not in DECISIONS:
            raise BadRequest(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        expected = expected_of(body.get("token"))
        label = body.get("label")
        override = body.get("override", False)
        if not isinstance(override, bool):
            raise BadRequest(f"'override' must be true or false, got {override!r}")
        if decision == "correct":
            if not isinstance(label, str) or label not in self._labels:
                raise BadRequest(f"label {label!r} is not in the taxonomy; pick one of the taxonomy's labels")
        elif label is not None:
            raise BadRequest(f"'label' is only sent with decision 'correct', not {decision!r}")
        current = self._table.get(uri)
        if current is None:
            raise NotFound(f"{uri} is not in the labels table (deleted since it was shown)")
        if decision == "confirm" and not current.get("label"):
            raise BadRequest(f"{uri} has no model label to confirm: pick a label (correct) or reject it")
        if not _shown(expected, current):
            raise self._conflict(current, expected, reviewer)
        overriding = bool(current.get(DECISION_ATTRIBUTE)) and current.get("reviewed_by_sub") != reviewer.sub
        if overriding:
            if not override:
                hint = "press Override to replace it" if reviewer.is_lead else "only a lead may override it"
                raise Conflict(
                    f"already decided by {_describe(current)}; {hint}", current=self._view(current, me=reviewer)
                )
            reviewer.require_lead("override another reviewer's decision")
        self._refuse_if_held(current, reviewer)

        now = self._now()
        human_label = current.get("label") if decision == "confirm" else label
        status = REVIEW_REJECTED if decision == "reject" else REVIEWED
        values: dict[str, Any] = {
            "status": status,
            DECISION_ATTRIBUTE: decision,
            "reviewed_by": reviewer.name,
            "reviewed_by_sub": reviewer.sub,
            "reviewed_at": now,
            "status_before_review": current.get("status_before_review") or current.get("status"),
        }
        remove = list(LEASE_ATTRIBUTES)  # a decision releases the photo
        if human_label is None:
            remove.append("human_label")
        else:
            values["human_label"] = human_label
        entry = self._entry(
            current,
            reviewer,
            now,
            action="override" if overriding else "decide",
            after={"status": status, "decision": decision, "human_label": human_label},
        )
        return self._write(current, expected, reviewer, values, remove, entry)

    def decide_many(self, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        """Several decisions (a grid page), each on its own: one refused does not stop the others."""
        items = body.get("decisions") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or not items or len(items) > MAX_BATCH:
            raise BadRequest(f"'decisions' must be a list of 1..{MAX_BATCH} decisions")
        results = []
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                raise BadRequest("each decision needs the photo's 'id'")
            if item.get("override"):
                raise BadRequest("an override is made one photo at a time, not in a batch")
            decision = {name: value for name, value in item.items() if name != "id"}
            try:
                results.append(
                    {"id": item["id"], "ok": True, "photo": self.decide(item["id"], decision, reviewer)}
                )
            except (Conflict, NotFound) as error:
                results.append(
                    {
                        "id": item["id"],
                        "ok": False,
                        "status": error.status,
                        "message": error.message,
                        "current": error.current,
                    }
                )
        return {"results": results, "saved": sum(result["ok"] for result in results)}

    def undo(self, photo: str, body: Mapping[str, Any], reviewer: Reviewer) -> dict[str, Any]:
        """Take back the caller's own latest decision: the photo returns to exactly what that decision replaced."""
        uri = image_uri_of(photo)
        if not isinstance(body, Mapping):
            raise BadRequest("the request body must be a JSON object")
        expected = expected_of(body.get("token"))
        if expected.reviewed_at is None:
            raise BadRequest("this token names no decision to undo (send the token the decision returned)")
        current = self._table.get(uri)
        if current is None:
            raise NotFound(f"{uri} is not in the labels table (deleted since it was decided)")
        if not current.get(DECISION_ATTRIBUTE):
            raise Conflict("the photo carries no decision to undo", current=self._view(current, me=reviewer))
        if not _shown(expected, current):
            raise self._conflict(current, expected, reviewer)
        latest = self._table.history(uri, newest_first=True, limit=1)
        last = latest[0] if latest else None
        if current.get("reviewed_by_sub") != reviewer.sub:
            raise Conflict(
                f"only the reviewer who decided can undo: decided by {current.get('reviewed_by')}",
                current=self._view(current, me=reviewer),
            )
        if last is None or last.get("action") == "undo" or last.get("at") != current.get("reviewed_at"):
            raise Conflict(
                "this decision is no longer the latest change to the photo (see its history); decide it again "
                "instead",
                current=self._view(current, me=reviewer),
            )
        self._refuse_if_held(current, reviewer)
        restored = dict(last.get("replaced") or {"status": current.get("status_before_review")})
        values: dict[str, Any] = {"status": restored["status"]}
        remove = list(LEASE_ATTRIBUTES)
        if restored.get("decision"):
            # A lead's override taken back: the earlier reviewer's decision returns as it was.
            values |= {
                DECISION_ATTRIBUTE: restored["decision"],
                "reviewed_by": restored.get("by"),
                "reviewed_by_sub": restored.get("by_sub"),
                "reviewed_at": restored.get("at"),
            }
            if restored.get("human_label"):
                values["human_label"] = restored["human_label"]
            else:
                remove.append("human_label")
        else:
            remove += list(REVIEW_ATTRIBUTES)
        entry = self._entry(
            current,
            reviewer,
            self._now(),
            action="undo",
            after={
                "status": restored["status"],
                "decision": restored.get("decision"),
                "human_label": restored.get("human_label"),
            },
            seq=int(last["seq"]) + 1,
        )
        entry["undoes"] = int(last["seq"])
        return self._write(current, expected, reviewer, values, remove, entry)

    # -- helpers ----------------------------------------------------------------------------------------

    def _entry(
        self,
        current: Mapping[str, Any],
        reviewer: Reviewer,
        now: str,
        *,
        action: str,
        after: Mapping[str, Any],
        seq: int | None = None,
    ) -> dict[str, Any]:
        if seq is None:
            latest = self._table.history(str(current["image_uri"]), newest_first=True, limit=1)
            seq = int(latest[0]["seq"]) + 1 if latest else 1
        return {
            "image_uri": current["image_uri"],
            "seq": seq,
            "at": now,
            "action": action,
            "by": reviewer.name,
            "by_sub": reviewer.sub,
            **after,
            "replaced": _decided_state(current),
            "model_label": current.get("label"),
            "confidence": current.get("confidence"),
            "model": current.get("model"),
            "classified_at": current.get("classified_at"),
        }

    def _write(
        self,
        current: Mapping[str, Any],
        expected: Expected,
        reviewer: Reviewer,
        values: Mapping[str, Any],
        remove: list[str],
        entry: Mapping[str, Any],
    ) -> dict[str, Any]:
        uri = str(current["image_uri"])
        written = self._table.write(
            uri,
            values=values,
            remove=remove,
            keep_first=(),
            expected=expected,
            sub=reviewer.sub,
            now=str(entry["at"]),
            entry=entry,
        )
        if not written:
            latest = self._table.get(uri)
            if latest is None:
                raise NotFound(f"{uri} is not in the labels table (deleted since it was shown)")
            if _shown(expected, latest):
                self._refuse_if_held(latest, reviewer)
                # Same state, nobody holding it: another change raced this one for the same history entry.
                raise Conflict(
                    "someone else changed the photo at the same moment; look again",
                    current=self._view(latest, me=reviewer),
                )
            raise self._conflict(latest, expected, reviewer)
        item = {name: value for name, value in current.items() if name not in remove}
        item |= {name: value for name, value in values.items() if value is not None}
        return self._view(item, me=reviewer)

    def _refuse_if_held(self, item: Mapping[str, Any], reviewer: Reviewer) -> None:
        holder = item.get("lease_sub")
        if holder and holder != reviewer.sub and str(item.get("lease_until")) > self._now():
            raise Conflict(
                f"held by {item.get('lease_by')} until {str(item.get('lease_until'))[11:19]} UTC (they are "
                "reviewing it); your decision was not saved",
                current=self._view(item, me=reviewer),
            )

    def _conflict(self, current: Mapping[str, Any], expected: Expected, reviewer: Reviewer) -> ReviewError:
        """Why a photo is no longer in the state it was shown in."""
        view = self._view(current, me=reviewer)
        if (current.get("reviewed_at") or None) != expected.reviewed_at:
            if current.get(DECISION_ATTRIBUTE):
                message = f"already decided by {_describe(current)}; your decision was not saved"
            else:
                message = "the earlier decision was undone meanwhile; your decision was not saved"
        elif current.get("classified_at") != expected.classified_at:
            message = (
                f"the model re-labelled this photo at {current.get('classified_at')} "
                f"({current.get('label')}, status {current.get('status')}); review the new result"
            )
        else:
            message = f"the photo's status changed from {expected.status} to {current.get('status')}"
        return Conflict(message, current=view)


__all__ = ["DECISION_ATTRIBUTE", "LEASE_ATTRIBUTES", "REVIEW_ATTRIBUTES", "Decisions"]
