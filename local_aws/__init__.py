"""A small local AWS for the demo (scripts/demo.py), the benchmarks and the tests, offline and without an account.

- `emulation`: moto's server with the stack's bucket, upload queue + DLQ, labels table
  (stacks/storage/labels_table.py) and S3 notification; `create_labels_table` for an in-process `mock_aws` account.
- `lambda_runner`: the labeller's environment (one function), a Lambda context, the SQS event source's event and
  loop, realtime and async labelling of the upload queue with the unmodified handlers.
- `photos`: generated photos whose label is their colour, uploads with bad files.
- `labelling_job`: scheduled mode's labelling job run as SageMaker would (its bundle, entry point, `SM_*`).
- `scheduled_runner`: uploads recorded PENDING, then one window (survey, plan, the job, report).
- `training`: the CPU overrides of the training config and the child environment.

`load_app_config()` reads cdk.json through the CDK app's own config model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from local_aws.training import REPO_ROOT

if TYPE_CHECKING:
    from stacks.config import AppConfig


def load_app_config() -> AppConfig:
    """cdk.json's `photo_labeler` context, parsed and validated as app.py does (without `-c` overrides)."""
    # Imported here: the config model loads aws_cdk (image tables), which the lambda and review tests never need.
    from stacks.common.constants import CONTEXT_KEY
    from stacks.config import AppConfig

    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return AppConfig.from_context(context.get(CONTEXT_KEY))


__all__ = ["load_app_config"]
