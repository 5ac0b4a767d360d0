"""Powertools adapter of the rollout probe (probe_core), invoked by the training pipeline's ProbeNewModel state.

Event: `{"EndpointName": "<the probe endpoint>"}`. Returns the probe's result (`label`, `confidence`, `forced`),
or fails with `ProbeFailed` (the rollout stops before any traffic shifts) or `TransientFault` (an invocation that
failed at SageMaker: the state retries it). Environment: `TAXONOMY_FILE` (relative to the task root, as the
labeller's), `POWERTOOLS_SERVICE_NAME`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from labeller_aws import ENDPOINT_CLIENT_CONFIG, SageMakerEndpoint
from probe_core import ProbeFailed, probe_photo, run_probe

from classification.contract import Taxonomy
from classification.labeller_environment import ProbeEnvironment

logger = Logger()


@cache
def _taxonomy() -> Taxonomy:
    """The taxonomy the labeller serves: TAXONOMY_FILE under the task root, else the bundled default."""
    return Taxonomy.load(ProbeEnvironment.from_process().taxonomy_path())


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    endpoint_name = event.get("EndpointName") if isinstance(event, dict) else None
    if not isinstance(endpoint_name, str) or not endpoint_name:
        raise ProbeFailed(f"the event names no endpoint: {str(event)[:200]}")
    endpoint = SageMakerEndpoint(boto3.client("sagemaker-runtime", config=ENDPOINT_CLIENT_CONFIG), endpoint_name)
    try:
        result = run_probe(endpoint, _taxonomy(), probe_photo())
    except ProbeFailed as error:
        logger.error("probe failed: the rollout stops", extra={"endpoint": endpoint_name, "reason": str(error)})
        raise
    logger.info("probe passed", extra={"endpoint": endpoint_name, **result.as_dict()})
    return result.as_dict()
