"""Powertools adapter of the review API (HTTP API, payload v2, JWT authorizer) and its backlog probe.

Routes (all under /api, all need the JWT authorizer's claims of an ID token, review_api/identity.py; every route
but /api/me needs the `reviewers` or `leads` group, export needs `leads`):
  GET  /api/labels                      taxonomy labels, statuses, decisions (the page's type-ahead)
  GET  /api/me                          the signed-in reviewer: e-mail, sub, groups, lead?, lease seconds
  GET  /api/photos?status&hotel&label&min_confidence&max_confidence&since&until&order&limit&cursor
                                        a page of the queue, read only (leases shown, not taken)
  POST /api/claims                      {the same parameters, "group"?: bool}: photos leased to the caller
  POST /api/claims/release              {"ids": [...]}: give leases back
  GET  /api/photos/{id}                 current state; whether the labelled version still exists
  GET  /api/photos/{id}/history         every change to its decision, oldest first
  POST /api/photos/{id}/decision        {"decision": confirm|correct|reject, "label"?, "token", "override"?}
  POST /api/decisions                   {"decisions": [{"id", "decision", "label"?, "token"}, ...]} (a grid page)
  POST /api/photos/{id}/undo            {"token": <token the decision returned>}
  GET  /api/export?cursor               leads: a page of the reviewed-photos manifest (review_api/export.py)
Errors: {"error": <kind>, "message": ..., "current"?: <photo>} with 400 / 401 / 403 / 404 / 409.

An EventBridge schedule invokes the same function with a scheduled event: it counts the NEEDS_REVIEW backlog
and emits `ReviewBacklog` (the dashboard's backlog widget). EMF metrics, namespace POWERTOOLS_METRICS_NAMESPACE,
dimension service=photo-review: ReviewDecisions (Count, all kinds), ReviewDecisionsByKind (Count, extra dimension
`decision`), ReviewOverrides (Count), ReviewConflicts (Count), ReviewUndos (Count), ReviewBacklog (Count, with
`exact` in the log line). Every decision's log line names the reviewer (e-mail and sub).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from classification.contract import DEFAULT_TAXONOMY_PATH, Taxonomy
from review_api.aws import DynamoLabelTable, S3PhotoStore
from review_api.core import (
    BACKLOG_BUDGET_SECONDS,
    LEASE_SECONDS,
    LIST_BUDGET_SECONDS,
    PRESIGNED_URL_SECONDS,
    ReviewConfig,
    ReviewService,
)
from review_api.identity import Reviewer
from review_api.inputs import DECISIONS, STATUSES, BadRequest, Conflict, ListQuery, ReviewError

# Seconds kept back from the invocation's remaining time when a read's budget is set, to build the answer.
RESPONSE_MARGIN_SECONDS = 2.0

SERVICE = "photo-review"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
app = APIGatewayHttpResolver()


_configured: ReviewService | None = None


def configure(service: ReviewService | None) -> None:
    """Serve with this service instead of one built from the environment (the local mode, review_api/local.py)."""
    global _configured
    _configured = service
    _service_from_env.cache_clear()


def get_service() -> ReviewService:
    return _configured or _service_from_env()


@cache
def _service_from_env() -> ReviewService:
    """Built on first use (not at import) so tests and the cold start read the final environment."""
    missing = [name for name in ("TABLE_NAME", "HISTORY_TABLE_NAME", "BUCKET_NAME") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"environment variables not set: {', '.join(missing)}")
    taxonomy_file = os.environ.get("TAXONOMY_FILE")
    taxonomy = Taxonomy.load(
        os.path.join(os.environ.get("LAMBDA_TASK_ROOT", "."), taxonomy_file)
        if taxonomy_file
        else DEFAULT_TAXONOMY_PATH
    )
    session = boto3.session.Session()
    # SigV4 and the regional virtual-hosted name: the page's Content-Security-Policy admits exactly that host.
    s3 = session.client(
        "s3",
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )
    return ReviewService(
        ReviewConfig(
            bucket=os.environ["BUCKET_NAME"],
            labels=taxonomy.labels,
            upload_prefix=os.environ.get("UPLOAD_PREFIX", "uploads/"),
            presigned_url_seconds=int(os.environ.get("PRESIGNED_URL_SECONDS", PRESIGNED_URL_SECONDS)),
            lease_seconds=int(os.environ.get("LEASE_SECONDS", LEASE_SECONDS)),
        ),
        table=DynamoLabelTable(
            session.client("dynamodb"), os.environ["TABLE_NAME"], os.environ["HISTORY_TABLE_NAME"]
        ),
        photos=S3PhotoStore(s3),
    )


def _reviewer() -> Reviewer:
    """The signed-in reviewer, refused (403) unless in the reviewers or leads group."""
    reviewer = _signed_in()
    reviewer.require_reviewer()
    return reviewer


def _signed_in() -> Reviewer:
    return Reviewer.from_claims(app.current_event.request_context.authorizer.jwt_claim)


def _budget() -> float:
    """Seconds a read may page through the index: its budget, or less when the invocation has less left."""
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000
    return max(0.5, min(LIST_BUDGET_SECONDS, remaining - RESPONSE_MARGIN_SECONDS))


@app.exception_handler(ReviewError)
def _review_error(error: ReviewError) -> Response:
    if isinstance(error, Conflict):
        metrics.add_metric(name="ReviewConflicts", unit=MetricUnit.Count, value=1)
    logger.info("request refused", extra={"status": error.status, "reason": error.message})
    body: dict[str, Any] = {"error": type(error).__name__, "message": error.message}
    if error.current is not None:
        body["current"] = error.current
    return Response(status_code=error.status, content_type="application/json", body=body)


@app.get("/api/labels")
def labels() -> dict[str, Any]:
    _reviewer()
    service = get_service()
    return {"labels": list(service.config.labels), "statuses": list(STATUSES), "decisions": list(DECISIONS)}


@app.get("/api/me")
def me() -> dict[str, Any]:
    # Answered without a group, so the page can say who is signed in and what is missing.
    reviewer = _signed_in()
    return reviewer.to_json() | {
        "may_review": reviewer.may_review,
        "lease_seconds": get_service().config.lease_seconds,
    }


@app.get("/api/photos")
def list_photos() -> dict[str, Any]:
    reviewer = _reviewer()
    service = get_service()
    params = app.current_event.query_string_parameters or {}
    return service.list(ListQuery.parse(params, service.config.labels), me=reviewer, budget_seconds=_budget())


@app.post("/api/claims")
def claim() -> dict[str, Any]:
    reviewer = _reviewer()
    service = get_service()
    body = _json_body()
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object of the queue's parameters")
    group = body.get("group", False)
    if not isinstance(group, bool):
        raise BadRequest(f"'group' must be true or false, got {group!r}")
    params = {name: None if value is None else str(value) for name, value in body.items() if name != "group"}
    query = ListQuery.parse(params, service.config.labels)
    page = service.claim(query, reviewer, group=group, budget_seconds=_budget())
    logger.info(
        "photos claimed",
        extra={"reviewer": reviewer.name, "sub": reviewer.sub, "claimed": len(page["photos"]), "group": group},
    )
    return page


@app.post("/api/claims/release")
def release() -> dict[str, Any]:
    reviewer = _reviewer()
    return get_service().release(_json_body(), reviewer)


@app.get("/api/photos/<photo>")
def get_photo(photo: str) -> dict[str, Any]:
    reviewer = _reviewer()
    return get_service().get(photo, me=reviewer)


@app.get("/api/photos/<photo>/history")
def photo_history(photo: str) -> dict[str, Any]:
    _reviewer()
    return get_service().history(photo)


def _recorded(view: dict[str, Any], reviewer: Reviewer, *, overridden: bool) -> None:
    metrics.add_metric(name="ReviewDecisions", unit=MetricUnit.Count, value=1)
    if overridden:
        metrics.add_metric(name="ReviewOverrides", unit=MetricUnit.Count, value=1)
    # Its own EMF blob: a `decision` dimension on the shared metrics object would split every other metric.
    with single_metric(
        name="ReviewDecisionsByKind", unit=MetricUnit.Count, value=1, default_dimensions={"service": SERVICE}
    ) as metric:
        metric.add_dimension(name="decision", value=str(view["decision"]))
    logger.info(
        "decision recorded",
        extra={
            "image_uri": view["image_uri"],
            "decision": view["decision"],
            "human_label": view["human_label"],
            "override": overridden,
            "reviewer": reviewer.name,
            "sub": reviewer.sub,
        },
    )


@app.post("/api/photos/<photo>/decision")
def decide(photo: str) -> dict[str, Any]:
    reviewer = _reviewer()
    body = _json_body()
    view = get_service().decide(photo, body, reviewer)
    _recorded(view, reviewer, overridden=bool(isinstance(body, dict) and body.get("override")))
    return view


@app.post("/api/decisions")
def decide_many() -> dict[str, Any]:
    reviewer = _reviewer()
    result = get_service().decide_many(_json_body(), reviewer)
    for outcome in result["results"]:
        if outcome["ok"]:
            _recorded(outcome["photo"], reviewer, overridden=False)
        else:
            metrics.add_metric(name="ReviewConflicts", unit=MetricUnit.Count, value=1)
    return result


@app.post("/api/photos/<photo>/undo")
def undo(photo: str) -> dict[str, Any]:
    reviewer = _reviewer()
    view = get_service().undo(photo, _json_body(), reviewer)
    metrics.add_metric(name="ReviewUndos", unit=MetricUnit.Count, value=1)
    logger.info(
        "decision undone",
        extra={
            "image_uri": view["image_uri"],
            "restored": view["status"],
            "reviewer": reviewer.name,
            "sub": reviewer.sub,
        },
    )
    return view


@app.get("/api/export")
def export() -> dict[str, Any]:
    reviewer = _reviewer()
    reviewer.require_lead("export the reviewed photos")
    params = app.current_event.query_string_parameters or {}
    page = get_service().export_page(params.get("cursor") or None, budget_seconds=_budget())
    logger.info("export page", extra={"reviewer": reviewer.name, "rows": len(page["rows"])})
    return page


def _json_body() -> Any:
    try:
        return app.current_event.json_body
    except ValueError as error:
        raise BadRequest("the request body must be JSON") from error


def emit_backlog() -> dict[str, Any]:
    """Count the NEEDS_REVIEW queue and emit ReviewBacklog (the dashboard's backlog widget)."""
    count, exact = get_service().backlog(budget_seconds=BACKLOG_BUDGET_SECONDS)
    metrics.add_metric(name="ReviewBacklog", unit=MetricUnit.Count, value=count)
    logger.info("review backlog", extra={"count": count, "exact": exact})
    return {"backlog": count, "exact": exact}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("source") == "aws.events":
        return emit_backlog()
    return app.resolve(event, context)
