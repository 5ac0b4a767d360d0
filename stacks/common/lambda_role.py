"""The execution role of a labelling Lambda function, allowed to write to its own log group only.

The labeller functions (stacks/labelling/labeller_function.py: the upload path's and the backfill's), the async
label writer and the review API's functions each get such a role; their other grants are added by their constructs.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct


def lambda_role(scope: Construct, construct_id: str, *, description: str, log_group: logs.ILogGroup) -> iam.Role:
    """A role Lambda assumes, writing only to `log_group`.

    Written by hand instead of AWSLambdaBasicExecutionRole, which allows writing to every log group. The log
    group's Arn attribute ends in `:*`, covering the one stream per execution environment that Lambda creates with
    a generated name, and nothing outside the function's own log group.
    """
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
        )
    )
    return role
