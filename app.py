#!/usr/bin/env python3
"""CDK entry point: the only place that reads context (cdk.json + `-c` overrides) and builds the config.

npx cdk synth                                   # environment-agnostic templates, no AWS account needed
npx cdk synth -c photo_labeler.endpoint.model_data_uri=s3://bucket/run-42/model/
"""

from __future__ import annotations

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.common import constants
from stacks.config import AppConfig, ConfigError
from stacks.photo_labeller_stack import PhotoLabellerStack
from stacks.serving.serving_properties import InvalidServingProperties


def build_app(app: cdk.App | None = None) -> tuple[cdk.App, PhotoLabellerStack]:
    app = app or cdk.App()
    context = app.node.get_all_context()
    config = AppConfig.from_context(context.get(constants.CONTEXT_KEY), overrides=context)
    stack = PhotoLabellerStack(app, config.name_prefix, config=config)
    # cdk-nag v3 is a policy-validation plugin: any unacknowledged AwsSolutions finding fails `cdk synth`.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    try:
        app, _stack = build_app()
    except ConfigError as error:
        # A config mistake is the user's, not a bug: one line naming the key, no traceback.
        print(f"Invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except InvalidServingProperties as error:
        print(f"Invalid model_code/serving.properties: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    app.synth()


if __name__ == "__main__":
    main()
