"""Regenerate djl_lmi_images.json from the SageMaker SDK's own image table (a maintenance tool, not run by synth).

The CDK app must not depend on the `sagemaker` SDK (1 GB, minutes to install), so the per-region DJL LMI image
registries are committed as data. To refresh them after an LMI release:

    mkdir -p /tmp/smcore && .venv/bin/pip download --no-deps sagemaker-core -d /tmp/smcore
    (cd /tmp/smcore && unzip -o -q sagemaker_core-*.whl)
    .venv/bin/python stacks/data/refresh_lmi_images.py /tmp/smcore/sagemaker/core/image_uri_config/djl-lmi.json

ECR host names come from botocore's endpoint data (as the SDK's `image_uris.retrieve` does), so partitions with
another DNS suffix (China, EUSC, ISO) are right without guessing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import botocore.loaders
import botocore.regions

TABLE_PATH = Path(__file__).with_name("djl_lmi_images.json")


def build_table(sdk_config: dict, source: str) -> dict:
    resolver = botocore.regions.EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))
    versions: dict[str, dict] = {}
    regions: set[str] = set()
    repositories = {release["repository"] for release in sdk_config["versions"].values()}
    if len(repositories) != 1:
        raise SystemExit(f"expected one ECR repository for djl-lmi, found {sorted(repositories)}")
    for version, release in sdk_config["versions"].items():
        versions[version] = {
            "tag": release["tag_prefix"],
            "registries": dict(sorted(release["registries"].items())),
        }
        regions.update(release["registries"])
    dns_suffixes = {}
    for region in sorted(regions):
        endpoint = resolver.construct_endpoint("ecr", region)
        if not endpoint:
            raise SystemExit(f"botocore has no ECR endpoint for {region}: upgrade botocore first")
        dns_suffixes[region] = endpoint["dnsSuffix"]
    return {
        "_source": source,
        "repository": repositories.pop(),
        "latest": sdk_config["version_aliases"]["latest"],
        "dns_suffixes": dns_suffixes,
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdk_json", type=Path, help="sagemaker/core/image_uri_config/djl-lmi.json")
    parser.add_argument("--source", default="sagemaker-core image_uri_config/djl-lmi.json")
    args = parser.parse_args()
    table = build_table(json.loads(args.sdk_json.read_text()), args.source)
    TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {TABLE_PATH}: {len(table['versions'])} versions, {len(table['dns_suffixes'])} regions")


if __name__ == "__main__":
    main()
