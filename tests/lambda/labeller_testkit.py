"""Helpers for the labeller tests: constants, photo and answer factories, a fake Lambda context, moto views."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeller_core import LabellerConfig
from moto.core import DEFAULT_ACCOUNT_ID
from PIL import Image

from classification.labeller_environment import LabellerEnvironment

REGION = "us-east-1"
BUCKET = "hotel-photos"
TRAINING_BUCKET = "hotel-photos-training"  # the model store: models, staged base models and their profile records
TABLE = "photo-labels"
ENDPOINT = "photo-labeler-endpoint"
MODEL_ID = "llava-next-hotel-v1"


def labeller_config(environ: Mapping[str, str], *, task_root: Path | None = None) -> LabellerConfig:
    """The labeller's settings from a function's environment, parsed by the contract as the handlers parse it."""
    return LabellerConfig.from_environment(LabellerEnvironment.from_environment(environ), task_root=task_root)


def photo(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def vllm_answer(label: str, logprob: float = -0.05) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1764100000,
        "model": "/opt/ml/model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f" this is a photo of {label}."},
                "logprobs": {"content": [{"token": "x", "logprob": logprob, "bytes": [120], "top_logprobs": []}]},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 2180, "total_tokens": 2192, "completion_tokens": 12},
    }


def base_answer(label: str, first: float, rival: str, rival_first: float) -> dict[str, Any]:
    """The base profile's answer " <label>" in vLLM's shape: its first token with `first` probability, the best
    other label's first token with `rival_first` listed beside it, every later token forced (as recorded from the
    real engine: tests/classification/data/vllm_responses.json)."""
    words = (" " + label).split(" ")[1:]
    tokens = [" " + words[0], *(" " + word for word in words[1:]), "</s>"]
    content = []
    for index, token in enumerate(tokens):
        logprob = math.log(first) if index == 0 else 0.0
        alternatives = [{"token": token, "logprob": logprob}]
        alternatives.append(
            {"token": " " + rival.split(" ")[0], "logprob": math.log(rival_first)}
            if index == 0
            else {"token": "<pad>", "logprob": -9999.0}
        )
        content.append({"token": token, "logprob": logprob, "top_logprobs": alternatives})
    answer = vllm_answer(label)
    answer["choices"][0]["message"]["content"] = " " + label
    answer["choices"][0]["logprobs"] = {"content": content}
    return answer


def queue_endpoint_reply(body: dict[str, Any] | str) -> None:
    """Script moto's InvokeEndpoint: the next request with a new body gets this reply."""
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID][REGION]
    text = body if isinstance(body, str) else json.dumps(body)
    backend.results_queue.append((text, "application/json", "AllTraffic", ""))


@dataclass
class FakeContext:
    """What Powertools' inject_lambda_context reads, plus a controllable time budget."""

    remaining_ms: int = 300_000
    function_name: str = "photo-labeler"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:photo-labeler"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Aws:
    s3: Any
    sqs: Any
    dynamodb: Any

    def item(self, key: str) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        raw = self.dynamodb.get_item(TableName=TABLE, Key={"image_uri": {"S": f"s3://{BUCKET}/{key}"}}).get("Item")
        return {k: TypeDeserializer().deserialize(v) for k, v in raw.items()} if raw else None

    def items(self) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        pages = self.dynamodb.get_paginator("scan").paginate(TableName=TABLE)
        return [
            {k: TypeDeserializer().deserialize(v) for k, v in raw.items()}
            for page in pages
            for raw in page["Items"]
        ]
