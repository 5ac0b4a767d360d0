"""Per-region AWS Deep Learning Container images: their URI for a stack and the grant to pull them.

The DJL LMI serving image (lmi_image.py) and the Hugging Face training image (training_image.py) are both published
by AWS from an ECR account that differs by region, under one fixed repository name, and some partitions use another
DNS suffix. Both are therefore resolved the same way from their committed tables, and both roles that pull them
need the same cross-account ECR grant; this module is that one shared place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aws_cdk import Aws, CfnMapping, Fn, Stack, Token
from aws_cdk import aws_iam as iam
from constructs import Construct

# Pulling an image: the layers of one repository in whichever account publishes it, plus the registry login.
ECR_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")


def ecr_image_uri(account: str, region: str, dns_suffix: str, repository: str, tag: str) -> str:
    """`<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>`, as `sagemaker.image_uris.retrieve` builds it."""
    return f"{account}.dkr.ecr.{region}.{dns_suffix}/{repository}:{tag}"


def regional_image_uri(
    scope: Construct,
    mapping_id: str,
    *,
    registries: Mapping[str, str],
    dns_suffixes: Mapping[str, str],
    repository: str,
    tag: str,
    literal: Callable[[str], str],
) -> str:
    """The image URI for the stack of `scope`: `literal(region)` when its region is known at synth time, else a
    lookup in a CloudFormation mapping (id `mapping_id` under `scope`) keyed by AWS::Region.

    An environment-agnostic template only learns its region at deploy time, so the per-region registry becomes a
    mapping; deploying to a region outside it fails at FindInMap, before any resource is created. `literal` is
    the table's own lookup, so an unsupported known region raises that table's error naming the supported ones.
    """
    region = Stack.of(scope).region
    if not Token.is_unresolved(region):
        return literal(region)
    mapping = CfnMapping(
        scope,
        mapping_id,
        mapping={
            region_name: {"account": account, "dnsSuffix": dns_suffixes[region_name]}
            for region_name, account in sorted(registries.items())
        },
    )
    return Fn.join(
        "",
        [
            mapping.find_in_map(Aws.REGION, "account"),
            ".dkr.ecr.",
            Aws.REGION,
            ".",
            mapping.find_in_map(Aws.REGION, "dnsSuffix"),
            f"/{repository}:{tag}",
        ],
    )


def image_account(image_uri: str) -> str:
    """The ECR account of `<account>.dkr.ecr.<region>...`: a literal, or, for a URI resolved at deploy time (a
    region mapping lookup), a `Fn::Select` over it that CloudFormation evaluates to that same account."""
    if Token.is_unresolved(image_uri):
        return Fn.select(0, Fn.split(".", image_uri))
    return image_uri.split(".", 1)[0]


def grant_ecr_pull(role: iam.Role, image_uri: str, repository: str) -> str:
    """Let `role` pull `image_uri` (in the repository `repository`); returns the repository ARN.

    The grant names the exact account that publishes the image in the stack's region (read from the URI, so a
    table and its grant cannot disagree). GetAuthorizationToken supports no resource-level permissions and is
    granted on `*`.
    """
    repository_arn = Stack.of(role).format_arn(
        service="ecr", account=image_account(image_uri), resource="repository", resource_name=repository
    )
    role.add_to_policy(iam.PolicyStatement(actions=list(ECR_PULL_ACTIONS), resources=[repository_arn]))
    role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
    return repository_arn
