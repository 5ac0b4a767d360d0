"""What refresh_lmi_images.py and refresh_hf_training_images.py share: ECR DNS suffixes from botocore, the
one-repository check, and the command line that reads an SDK image_uri_config file and writes a table.

Both tools turn a file of the SageMaker SDK's image_uri_config into a committed JSON table of the same layout
(repository, latest, dns_suffixes, versions); only how the versions are read differs. Like the tools, this is
maintenance code, not run by synth. The tools are run as scripts, which puts this folder on sys.path.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import botocore.loaders
import botocore.regions


def ecr_dns_suffixes(regions: Iterable[str]) -> dict[str, str]:
    """The ECR DNS suffix of each region, from botocore's endpoint data as the SDK's `image_uris.retrieve` does,
    so partitions with another suffix (China, EUSC, ISO) are right without guessing."""
    resolver = botocore.regions.EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))
    dns_suffixes = {}
    for region in sorted(regions):
        endpoint = resolver.construct_endpoint("ecr", region)
        if not endpoint:
            raise SystemExit(f"botocore has no ECR endpoint for {region}: upgrade botocore first")
        dns_suffixes[region] = endpoint["dnsSuffix"]
    return dns_suffixes


def single_repository(repositories: set[str], image: str) -> str:
    """The one ECR repository all versions live in: the CDK tables store one name per image."""
    if len(repositories) != 1:
        raise SystemExit(f"expected one ECR repository for {image}, found {sorted(repositories)}")
    return repositories.pop()


def refresh_main(
    doc: str,
    build_table: Callable[[dict[str, Any], str], dict[str, Any]],
    table_path: Path,
    sdk_json_help: str,
    default_source: str,
) -> None:
    """Parse `sdk_json [--source S]`, build the table from that SDK file and write it to `table_path`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("sdk_json", type=Path, help=sdk_json_help)
    parser.add_argument("--source", default=default_source)
    args = parser.parse_args()
    table = build_table(json.loads(args.sdk_json.read_text()), args.source)
    table_path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {table_path}: {len(table['versions'])} versions, {len(table['dns_suffixes'])} regions")
