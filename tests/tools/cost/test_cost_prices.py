"""The price file: one file, every price with its source, whether it was confirmed, and the date it was read."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from tools.cost import prices

RAW: dict[str, Any] = json.loads(prices.PRICES_FILE.read_text())


def test_every_price_says_where_it_comes_from_and_when_it_was_read() -> None:
    datetime.date.fromisoformat(RAW["read_on"])
    assert RAW["region"] == "us-east-1"
    tables = ("sagemaker_instance_hour", "sagemaker_training_instance_hour")
    sections = [v for k, v in RAW.items() if isinstance(v, dict) and k not in tables]
    for table in tables:
        sections += list(RAW[table].values())
    for section in sections:
        assert section["source"].strip()
        assert section["confirmed"].strip()


def test_the_real_time_endpoint_price_is_the_seeds() -> None:
    # The seed's $0.26 / 1,000 photos rests on ml.g5.xlarge at $1.408 an hour (tests/tools/test_cost_estimate.py)
    assert prices.load().instance_hour("ml.g5.xlarge", "real_time") == 1.408


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("lambda", "gb_second_x86_64"), -1, "lambda.gb_second_x86_64 must be a non-negative number"),
        (("sqs", "standard_per_million_requests"), "0.40", "sqs.standard_per_million_requests must be"),
        (("s3", "standard_get_per_thousand"), None, "s3.standard_get_per_thousand is missing"),
    ],
)
def test_a_bad_price_names_its_key(path: tuple[str, str], value: object, message: str) -> None:
    data = copy.deepcopy(RAW)
    if value is None:
        del data[path[0]][path[1]]
    else:
        data[path[0]][path[1]] = value
    with pytest.raises(prices.PriceError, match=message.replace(".", r"\.")):
        prices.parse(data)


def test_an_instance_type_without_a_price_is_an_error_that_says_how_to_go_on() -> None:
    with pytest.raises(prices.PriceError, match="--price-per-hour"):
        prices.load().instance_hour("ml.p9.huge")


def test_the_job_is_priced_at_the_training_rate_less_the_managed_spot_discount() -> None:
    loaded = prices.load()
    assert loaded.training_instance_hour("ml.g5.xlarge") == 1.408
    assert loaded.spot_discount == 0.65
    # The discount's source names how to read your own: 1 - BillableTimeInSeconds / TrainingTimeInSeconds
    assert "BillableTimeInSeconds" in RAW["managed_spot"]["source"]
    with pytest.raises(prices.PriceError, match="--job-price-per-hour"):
        loaded.training_instance_hour("ml.p9.huge")


def test_a_spot_discount_of_one_or_more_is_refused() -> None:
    data = copy.deepcopy(RAW)
    data["managed_spot"]["discount"] = 1.0
    with pytest.raises(prices.PriceError, match=r"managed_spot\.discount must be below 1"):
        prices.parse(data)
