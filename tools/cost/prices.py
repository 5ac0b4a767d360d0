"""The price list (`prices.json`): one file, each price with its source and the date it was read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).resolve().parent / "prices.json"


class PriceError(ValueError):
    """The price file is missing a price or holds one that is not a non-negative number."""


@dataclass(frozen=True)
class Prices:
    region: str
    read_on: str  # ISO date the prices were read
    instance_hour_real_time: dict[str, float]  # SageMaker instance type -> USD per instance-hour
    instance_hour_async: dict[str, float]
    training_hour: dict[str, float]  # SageMaker training instance type -> USD per on-demand instance-hour
    spot_discount: float  # managed Spot's saving on the training rate, 0..1
    lambda_gb_second_x86: float
    lambda_gb_second_arm64: float
    lambda_per_request: float
    sqs_per_request: float
    s3_get: float  # USD per request
    s3_put: float
    dynamodb_write_unit: float  # USD per on-demand write request unit
    dynamodb_read_unit: float
    logs_per_gb: float
    custom_metric_month: float
    alarm_metric_month: float  # standard resolution, per metric an alarm reads
    high_resolution_alarm_metric_month: float
    dashboard_month: float
    scheduler_invocation: float  # EventBridge Scheduler, USD per invocation
    xray_per_trace: float
    sns_publish: float  # USD per publish (deliveries to SQS are free)
    sfn_transition: float  # USD per Step Functions standard state transition
    kms_key_month: float
    sources: dict[str, str]  # section -> "source; confirmed: ..."

    def instance_hour(self, instance_type: str, mode: str = "real_time") -> float:
        table = self.instance_hour_async if mode == "async" else self.instance_hour_real_time
        if instance_type not in table:
            raise PriceError(
                f"no {mode} price for {instance_type} in {PRICES_FILE.name}; known: {', '.join(table)} "
                "(pass --price-per-hour)"
            )
        return table[instance_type]

    def training_instance_hour(self, instance_type: str) -> float:
        if instance_type not in self.training_hour:
            raise PriceError(
                f"no training price for {instance_type} in {PRICES_FILE.name}; known: "
                f"{', '.join(self.training_hour)} (pass --job-price-per-hour)"
            )
        return self.training_hour[instance_type]


def _number(data: dict[str, Any], section: str, key: str) -> float:
    try:
        value = data[section][key]
    except (KeyError, TypeError):
        raise PriceError(f"{PRICES_FILE.name}: {section}.{key} is missing") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PriceError(f"{PRICES_FILE.name}: {section}.{key} must be a non-negative number, got {value!r}")
    return float(value)


def parse(data: dict[str, Any]) -> Prices:
    instances = data.get("sagemaker_instance_hour")
    if not isinstance(instances, dict) or not instances:
        raise PriceError(f"{PRICES_FILE.name}: sagemaker_instance_hour must list at least one instance type")
    sources = {
        name: f"{section.get('source', '?')}; confirmed: {section.get('confirmed', '?')}"
        for name, section in data.items()
        if isinstance(section, dict) and "source" in section
    }
    for name, section in instances.items():
        sources[name] = f"{section.get('source', '?')}; confirmed: {section.get('confirmed', '?')}"
    training = data.get("sagemaker_training_instance_hour")
    if not isinstance(training, dict) or not training:
        raise PriceError(f"{PRICES_FILE.name}: sagemaker_training_instance_hour must list an instance type")
    for name, section in training.items():
        sources[f"training {name}"] = f"{section.get('source', '?')}; confirmed: {section.get('confirmed', '?')}"
    discount = _number(data, "managed_spot", "discount")
    if discount >= 1:
        raise PriceError(f"{PRICES_FILE.name}: managed_spot.discount must be below 1, got {discount}")
    return Prices(
        region=str(data.get("region", "?")),
        read_on=str(data.get("read_on", "?")),
        instance_hour_real_time={n: _number(instances, n, "real_time") for n in instances},
        instance_hour_async={n: _number(instances, n, "async") for n in instances},
        training_hour={n: _number(training, n, "on_demand") for n in training},
        spot_discount=discount,
        lambda_gb_second_x86=_number(data, "lambda", "gb_second_x86_64"),
        lambda_gb_second_arm64=_number(data, "lambda", "gb_second_arm64"),
        lambda_per_request=_number(data, "lambda", "per_million_requests") / 1e6,
        sqs_per_request=_number(data, "sqs", "standard_per_million_requests") / 1e6,
        s3_get=_number(data, "s3", "standard_get_per_thousand") / 1e3,
        s3_put=_number(data, "s3", "standard_put_per_thousand") / 1e3,
        dynamodb_write_unit=_number(data, "dynamodb", "on_demand_per_million_write_units") / 1e6,
        dynamodb_read_unit=_number(data, "dynamodb", "on_demand_per_million_read_units") / 1e6,
        logs_per_gb=_number(data, "cloudwatch", "logs_ingestion_per_gb"),
        custom_metric_month=_number(data, "cloudwatch", "custom_metric_per_month"),
        alarm_metric_month=_number(data, "cloudwatch", "alarm_metric_per_month"),
        high_resolution_alarm_metric_month=_number(data, "cloudwatch", "high_resolution_alarm_metric_per_month"),
        dashboard_month=_number(data, "cloudwatch", "dashboard_per_month"),
        scheduler_invocation=_number(data, "eventbridge_scheduler", "per_million_invocations") / 1e6,
        xray_per_trace=_number(data, "cloudwatch", "xray_per_million_traces") / 1e6,
        sns_publish=_number(data, "sns", "per_million_publishes") / 1e6,
        sfn_transition=_number(data, "step_functions", "standard_per_thousand_transitions") / 1e3,
        kms_key_month=_number(data, "kms", "key_per_month"),
        sources=sources,
    )


@cache
def load(path: Path = PRICES_FILE) -> Prices:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PriceError(f"cannot read the price file {path}: {error}") from error
    return parse(data)
