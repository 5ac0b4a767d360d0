"""Regenerate hf_training_images.json from the SageMaker SDK's image table (a maintenance tool, not run by synth).

The training pipeline runs the Hugging Face PyTorch training DLC, which AWS publishes from a different ECR account
in many regions, so the image URI cannot be built from a formula. The CDK app must not depend on the `sagemaker`
SDK (1 GB, minutes to install); the table is committed as data instead. To refresh it after a DLC release:

    mkdir -p /tmp/smcore && .venv/bin/pip download --no-deps sagemaker-core -d /tmp/smcore
    (cd /tmp/smcore && unzip -o -q sagemaker_core-*.whl)
    .venv/bin/python stacks/common/data/refresh_hf_training_images.py \
        /tmp/smcore/sagemaker/core/image_uri_config/huggingface.json --source "sagemaker-core X.Y.Z (PyPI)"

Each version key is `<transformers>-pytorch<torch>` (e.g. `5.3.0-pytorch2.9.0`); the tag is the one
`sagemaker.image_uris.retrieve("huggingface", region, version=..., base_framework_version="pytorch2.9.0",
image_scope="training", instance_type="ml.p5.48xlarge")` returns. ECR DNS suffixes come from botocore's endpoint
data, as in refresh_lmi_images.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdk_image_tables import ecr_dns_suffixes, refresh_main, single_repository

TABLE_PATH = Path(__file__).with_name("hf_training_images.json")
PROCESSOR = "gpu"  # the pipeline trains on P5 (H100) instances only


def build_table(sdk_config: dict[str, Any], source: str) -> dict[str, Any]:
    training = sdk_config["training"]
    versions: dict[str, dict[str, Any]] = {}
    repositories: set[str] = set()
    regions: set[str] = set()
    for transformers_version, frameworks in training["versions"].items():
        for framework, release in frameworks.items():
            if not framework.startswith("pytorch") or not isinstance(release, dict) or "registries" not in release:
                continue  # version_aliases, tensorflow builds
            container = release.get("container_version", {}).get(PROCESSOR)
            if container is None:
                continue
            torch_version = framework.removeprefix("pytorch")
            (py_version,) = release["py_versions"][-1:]
            tag = f"{torch_version}-transformers{transformers_version}-{PROCESSOR}-{py_version}-{container}"
            key = f"{transformers_version}-pytorch{torch_version}"
            versions[key] = {"tag": tag, "registries": dict(sorted(release["registries"].items()))}
            repositories.add(release["repository"])
            regions.update(release["registries"])
    repository = single_repository(repositories, "Hugging Face training")
    dns_suffixes = ecr_dns_suffixes(regions)
    latest = max(versions, key=_version_key)
    return {
        "_source": source,
        "repository": repository,
        "latest": latest,
        "dns_suffixes": dns_suffixes,
        "versions": dict(sorted(versions.items(), key=lambda item: _version_key(item[0]))),
    }


def _version_key(key: str) -> tuple[int, ...]:
    transformers, _, torch = key.partition("-pytorch")
    return tuple(int(part) for part in (*transformers.split("."), *torch.split(".")) if part.isdigit())


def main() -> None:
    refresh_main(
        __doc__,
        build_table,
        TABLE_PATH,
        sdk_json_help="sagemaker/core/image_uri_config/huggingface.json",
        default_source="sagemaker-core image_uri_config/huggingface.json",
    )


if __name__ == "__main__":
    main()
