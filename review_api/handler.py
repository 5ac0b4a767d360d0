"""Powertools adapter of the review API (HTTP API, payload v2, JWT authorizer) and its backlog probe.

Routes (all under /api, all need the JWT authorizer's claims):
  GET  /api/labels                      taxonomy labels, statuses, decisions (the page's type-ahead)
  GET  /api/me                          the signed-in reviewer
  GET  /api/photos?status&hotel&label&min_confidence&max_confidence&since&until&order&limit&cursor
  GET  /api/photos/{id}                 current state; whether the labelled version still exists
  POST /api/photos/{id}/decision        {"decision": confirm|correct|reject, "label"?, "token"}
  POST /api/photos/{id}/undo            {"token": <token the decision returned>}
Errors: {"error": <kind>, "message": ..., "current"?: <photo>} with 400 / 401 / 404 / 409.

An EventBridge schedule invokes the same function with a scheduled event: it counts the NEEDS_REVIEW backlog
and emits `ReviewBacklog` (the dashboard's backlog widget). EMF metrics, namespace POWERTOOLS_METRICS_NAMESPACE,
dimension service=photo-review: ReviewDecisions (Count, all kinds), ReviewDecisionsByKind (Count, extra dimension
`decision`), ReviewConflicts (Count), ReviewUndos (Count), ReviewBacklog (Count, with `exact` in the log line).
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
from review_api.core import BACKLOG_COUNT_CALLS, PRESIGNED_URL_SECONDS, ReviewConfig, ReviewService
from review_api.inputs import DECISIONS, STATUSES, BadRequest, Conflict, ListQuery, Reviewer, ReviewError

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
    missing = [name for name in ("TABLE_NAME", "BUCKET_NAME") if not os.environ.get(name)]
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
        ),
        table=DynamoLabelTable(session.client("dynamodb"), os.environ["TABLE_NAME"]),
        photos=S3PhotoStore(s3),
    )


def _reviewer() -> Reviewer:
    return Reviewer.from_claims(app.current_event.request_context.authorizer.jwt_claim)


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
    reviewer = _reviewer()
    return {"name": reviewer.name, "sub": reviewer.sub}


@app.get("/api/photos")
def list_photos() -> dict[str, Any]:
    _reviewer()
    service = get_service()
    params = app.current_event.query_string_parameters or {}
    return service.list(ListQuery.parse(params, service.config.labels))


@app.get("/api/photos/<photo>")
def get_photo(photo: str) -> dict[str, Any]:
    _reviewer()
    return get_service().get(photo)


@app.post("/api/photos/<photo>/decision")
def decide(photo: str) -> dict[str, Any]:
    reviewer = _reviewer()
    body = _json_body()
    view = get_service().decide(photo, body, reviewer)
    metrics.add_metric(name="ReviewDecisions", unit=MetricUnit.Count, value=1)
    # Its own EMF blob: a `decision` dimension on the shared metrics object would split every other metric.
    with single_metric(
        name="ReviewDecisionsByKind", unit=MetricUnit.Count, value=1, default_dimensions={"service": SERVICE}
    ) as metric:
        metric.add_dimension(name="decision", value=str(body.get("decision")))
    logger.info(
        "decision recorded",
        extra={"image_uri": view["image_uri"], "decision": view["decision"], "human_label": view["human_label"]},
    )
    return view


@app.post("/api/photos/<photo>/undo")
def undo(photo: str) -> dict[str, Any]:
    reviewer = _reviewer()
    view = get_service().undo(photo, _json_body(), reviewer)
    metrics.add_metric(name="ReviewUndos", unit=MetricUnit.Count, value=1)
    logger.info("decision undone", extra={"image_uri": view["image_uri"]})
    return view


def _json_body() -> Any:
    try:
        return app.current_event.json_body
    except ValueError as error:
        raise BadRequest("the request body must be JSON") from error


def emit_backlog() -> dict[str, Any]:
    """Count the NEEDS_REVIEW queue and emit ReviewBacklog (the dashboard's backlog widget)."""
    count, exact = get_service().backlog(max_calls=BACKLOG_COUNT_CALLS)
    metrics.add_metric(name="ReviewBacklog", unit=MetricUnit.Count, value=count)
    logger.info("review backlog", extra={"count": count, "exact": exact})
    return {"backlog": count, "exact": exact}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("source") == "aws.events":
        return emit_backlog()
    return app.resolve(event, context)
