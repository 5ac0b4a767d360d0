"""labeller_aws.SsmModelRegistry against moto's SSM: the model id the labeller records, its cache, its faults."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from labeller_aws import MODEL_PARAMETER_MAX_AGE_SECONDS, SsmModelRegistry
from labeller_core import TransientFault
from labeller_testkit import MODEL_ID, REGION, Aws

PARAMETER = "/hotel-photos/model/current"
RUN_1 = "s3://hotel-photos-training/models/run-1/"
RUN_2 = "s3://hotel-photos-training/models/run-2/"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CountingSsm:
    """moto's SSM client, counting GetParameter calls (each is a request against the account's SSM quota)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def get_parameter(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        return self.client.get_parameter(**params)


def registry(client: Any, clock: FakeClock, warnings: list[str]) -> SsmModelRegistry:
    return SsmModelRegistry(client, PARAMETER, fallback=MODEL_ID, clock=clock, warn=warnings.append)


def test_the_registered_model_is_read_once_per_minute_and_a_new_registration_is_seen_after_that(
    aws: Aws,
) -> None:
    # Given the training pipeline registered run 1
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    counting, clock, warnings = CountingSsm(ssm), FakeClock(), []
    current = registry(counting, clock, warnings)
    assert current() == RUN_1

    # When run 2 is registered (the pipeline overwrites the parameter after a rollout)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_2, Type="String", Overwrite=True)

    # Then photos within the cache period still record run 1, without another SSM request
    clock.now += MODEL_PARAMETER_MAX_AGE_SECONDS - 1
    assert [current(), current()] == [RUN_1, RUN_1] and counting.calls == 1
    # and once the cache expired the next photo records run 2
    clock.now += 1
    assert current() == RUN_2 and counting.calls == 2
    assert warnings == []


def test_until_a_model_is_registered_model_id_is_recorded_with_one_warning(aws: Aws) -> None:
    # Given no registry parameter yet (no training run has finished)
    ssm = boto3.client("ssm", region_name=REGION)
    counting, clock, warnings = CountingSsm(ssm), FakeClock(), []
    current = registry(counting, clock, warnings)

    # When photos are labelled across several cache periods
    values = []
    for _ in range(3):
        values += [current(), current()]
        clock.now += MODEL_PARAMETER_MAX_AGE_SECONDS

    # Then MODEL_ID is recorded, SSM is asked once per period (not per photo), and one warning names the parameter
    assert values == [MODEL_ID] * 6 and counting.calls == 3
    assert len(warnings) == 1 and PARAMETER in warnings[0] and MODEL_ID in warnings[0]

    # When the pipeline registers its first model
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    # Then the next period records it
    assert current() == RUN_1


class FailingSsm:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_parameter(self, **params: Any) -> dict[str, Any]:
        raise self.error


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetParameter"
    )


@pytest.mark.parametrize(
    "error",
    [
        _client_error("ThrottlingException", 400),
        _client_error("AccessDeniedException", 400),
        _client_error("InternalServerError", 500),
        EndpointConnectionError(endpoint_url="https://ssm.us-east-1.amazonaws.com"),
    ],
    ids=["throttled", "access-denied", "5xx", "no-connection"],
)
def test_any_other_ssm_error_is_transient_so_the_record_is_retried_not_misattributed(error: Exception) -> None:
    warnings: list[str] = []
    current = registry(FailingSsm(error), FakeClock(), warnings)
    with pytest.raises(TransientFault, match=f"SSM GetParameter {PARAMETER} failed"):
        current()
    assert warnings == []


def test_a_fault_is_not_cached_the_next_photo_asks_again(aws: Aws) -> None:
    # Given SSM fails once, then answers
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=RUN_1, Type="String")
    answers: list[Exception | None] = [_client_error("ThrottlingException", 400), None]

    class Flaky:
        def get_parameter(self, **params: Any) -> dict[str, Any]:
            error = answers.pop(0)
            if error:
                raise error
            return ssm.get_parameter(**params)

    current = registry(Flaky(), FakeClock(), [])
    with pytest.raises(TransientFault):
        current()
    # When the retry comes within the same second, Then it reads the parameter instead of a cached failure
    assert current() == RUN_1
