"""Regenerate djl_lmi_images.json from the SageMaker SDK's own image table (a maintenance tool, not run by synth).

The CDK app must not depend on the `sagemaker` SDK (1 GB, minutes to install), so the per-region DJL LMI image
registries are committed as data. To refresh them after an LMI release:

    mkdir -p /tmp/smcore && .venv/bin/pip download --no-deps sagemaker-core -d /tmp/smcore
    (cd /tmp/smcore && unzip -o -q sagemaker_core-*.whl)
    .venv/bin/python stacks/common/data/refresh_lmi_images.py \
        /tmp/smcore/sagemaker/core/image_uri_config/djl-lmi.json

ECR host names come from botocore's endpoint data (as the SDK's `image_uris.retrieve` does), so partitions with
another DNS suffix (China, EUSC, ISO) are right without guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdk_image_tables import ecr_dns_suffixes, refresh_main, single_repository

TABLE_PATH = Path(__file__).with_name("djl_lmi_images.json")


def build_table(sdk_config: dict[str, Any], source: str) -> dict[str, Any]:
    versions: dict[str, dict[str, Any]] = {}
    regions: set[str] = set()
    repositories = {release["repository"] for release in sdk_config["versions"].values()}
    repository = single_repository(repositories, "djl-lmi")
    for version, release in sdk_config["versions"].items():
        versions[version] = {
            "tag": release["tag_prefix"],
            "registries": dict(sorted(release["registries"].items())),
        }
        regions.update(release["registries"])
    return {
        "_source": source,
        "repository": repository,
        "latest": sdk_config["version_aliases"]["latest"],
        "dns_suffixes": ecr_dns_suffixes(regions),
        "versions": versions,
    }


def main() -> None:
    refresh_main(
        __doc__,
        build_table,
        TABLE_PATH,
        sdk_json_help="sagemaker/core/image_uri_config/djl-lmi.json",
        default_source="sagemaker-core image_uri_config/djl-lmi.json",
    )


if __name__ == "__main__":
    main()
