"""The Hugging Face PyTorch training container per region, from the committed table data/hf_training_images.json.

Like the DJL LMI image (lmi_image.py), the training DLC is published from a different ECR account in many regions
(China and GovCloud included), so the URI comes from a table generated from the SageMaker SDK's own data by
data/refresh_hf_training_images.py. A stack pinned to a region gets a literal URI; an environment-agnostic stack
gets a CloudFormation mapping keyed by AWS::Region, so a region outside the table fails at deploy time before any
resource is created.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from constructs import Construct

TABLE_FILE = Path(__file__).resolve().parent / "data" / "hf_training_images.json"


class UnsupportedTrainingImage(ValueError):
    """The requested training image version or region is not in the committed table."""


@dataclass(frozen=True)
class TrainingImageTable:
    repository: str
    latest: str
    dns_suffixes: dict[str, str]
    tags: dict[str, str]  # version key (`5.3.0-pytorch2.9.0`) -> image tag
    registries: dict[str, dict[str, str]]  # version key -> region -> ECR account
    source: str

    @classmethod
    def load(cls, path: Path = TABLE_FILE) -> TrainingImageTable:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            repository=data["repository"],
            latest=data["latest"],
            dns_suffixes=dict(data["dns_suffixes"]),
            tags={version: entry["tag"] for version, entry in data["versions"].items()},
            registries={version: dict(entry["registries"]) for version, entry in data["versions"].items()},
            source=data["_source"],
        )

    def check_version(self, version: str) -> None:
        if version not in self.tags:
            newest = sorted(self.tags, reverse=True)[:6]
            raise UnsupportedTrainingImage(
                f"Hugging Face training image {version!r} is not in {TABLE_FILE.name}; known versions include "
                f"{', '.join(newest)} (regenerate the table with stacks/common/data/refresh_hf_training_images.py)"
            )

    def account(self, version: str, region: str) -> str:
        self.check_version(version)
        registries = self.registries[version]
        if region not in registries:
            raise UnsupportedTrainingImage(
                f"Hugging Face training image {version} is not published in region {region!r}; supported "
                f"regions: {', '.join(sorted(registries))}"
            )
        return registries[region]

    def uri(self, version: str, region: str) -> str:
        # Imported here: the config reads this table, and tools that read the config stay free of the CDK.
        from stacks.common.container_images import ecr_image_uri

        account = self.account(version, region)
        return ecr_image_uri(account, region, self.dns_suffixes[region], self.repository, self.tags[version])

    def image_uri(self, scope: Construct, version: str) -> str:
        """The URI for the stack of `scope`: a literal when its region is known, else a region mapping lookup."""
        from stacks.common.container_images import regional_image_uri

        self.check_version(version)
        return regional_image_uri(
            scope,
            "TrainingImageRegistry",
            registries=self.registries[version],
            dns_suffixes=self.dns_suffixes,
            repository=self.repository,
            tag=self.tags[version],
            literal=lambda region: self.uri(version, region),
        )


@cache
def default_training_images() -> TrainingImageTable:
    return TrainingImageTable.load()
