"""The DJL LMI container image per region, from the committed table data/djl_lmi_images.json.

28 of the 44 regions pull the image from an ECR account other than 763104351884, and some partitions use another
DNS suffix, so the URI cannot be built from a formula. The table is regenerated from the SageMaker SDK's own data
by data/refresh_lmi_images.py; the SDK itself stays out of the CDK app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from stacks.common import constants

if TYPE_CHECKING:
    from constructs import Construct


class UnsupportedImage(ValueError):
    """The requested LMI version or region is not in the committed image table."""


@dataclass(frozen=True)
class LmiRelease:
    version: str
    tag: str
    registries: dict[str, str]  # region -> ECR account


@dataclass(frozen=True)
class LmiImageTable:
    repository: str
    latest: str
    dns_suffixes: dict[str, str]  # region -> ECR DNS suffix (amazonaws.com, amazonaws.com.cn, ...)
    releases: dict[str, LmiRelease]
    source: str

    @classmethod
    def load(cls, path: Path = constants.LMI_IMAGE_TABLE_FILE) -> LmiImageTable:
        data = json.loads(path.read_text(encoding="utf-8"))
        releases = {
            version: LmiRelease(version=version, tag=entry["tag"], registries=dict(entry["registries"]))
            for version, entry in data["versions"].items()
        }
        return cls(
            repository=data["repository"],
            latest=data["latest"],
            dns_suffixes=dict(data["dns_suffixes"]),
            releases=releases,
            source=data["_source"],
        )

    def release(self, version: str) -> LmiRelease:
        if version not in self.releases:
            raise UnsupportedImage(
                f"DJL LMI version {version!r} is not in {constants.LMI_IMAGE_TABLE_FILE.name}; "
                f"known versions: {', '.join(sorted(self.releases, reverse=True))}"
            )
        return self.releases[version]

    def regions(self, version: str) -> list[str]:
        return sorted(self.release(version).registries)

    def account(self, version: str, region: str) -> str:
        release = self.release(version)
        if region not in release.registries:
            raise UnsupportedImage(
                f"DJL LMI {version} is not published in region {region!r}; supported regions: "
                f"{', '.join(sorted(release.registries))}"
            )
        return release.registries[region]

    def uri(self, version: str, region: str) -> str:
        """The full image URI, as `sagemaker.image_uris.retrieve("djl-lmi", region, version)` returns it."""
        account = self.account(version, region)
        tag = self.release(version).tag
        # Imported here: the config reads this table, and tools that read the config stay free of the CDK.
        from stacks.common.container_images import ecr_image_uri

        return ecr_image_uri(account, region, self.dns_suffixes[region], self.repository, tag)

    def image_uri(self, scope: Construct, version: str) -> str:
        """The URI for the stack of `scope`: a literal when its region is known, else a region mapping lookup.
        Raises UnsupportedImage naming the supported regions when the stack's region has no such image."""
        from stacks.common.container_images import regional_image_uri

        release = self.release(version)
        return regional_image_uri(
            scope,
            "LmiImageRegistry",
            registries=release.registries,
            dns_suffixes=self.dns_suffixes,
            repository=self.repository,
            tag=release.tag,
            literal=lambda region: self.uri(version, region),
        )


@cache
def default_table() -> LmiImageTable:
    return LmiImageTable.load()
