"""The committed per-region DJL LMI image table."""

from __future__ import annotations

import pytest

from stacks.common.lmi_image import UnsupportedImage, default_table

DEFAULT_ACCOUNT = "763104351884"


def test_default_version_covers_44_regions_of_which_28_use_another_ecr_account() -> None:
    # Given the table generated from the SageMaker SDK's djl-lmi.json
    release = default_table().release("0.38.0")
    # Then it holds every region the SDK knows, including the 28 outside the default account (REFERENCE.md)
    assert len(release.registries) == 44
    assert sum(account != DEFAULT_ACCOUNT for account in release.registries.values()) == 28


@pytest.mark.parametrize(
    ("region", "uri"),
    [
        # The value `sagemaker.core.image_uris.retrieve("djl-lmi", region="us-east-1")` returns (REFERENCE.md).
        ("us-east-1", "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130"),
        ("ap-east-1", "871362719292.dkr.ecr.ap-east-1.amazonaws.com/djl-inference:0.38.0-lmi29.0.0-cu130"),
        ("cn-north-1", "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/djl-inference:0.38.0-lmi29.0.0-cu130"),
    ],
)
def test_uri_matches_the_sdk_format_including_partition_dns_suffixes(region: str, uri: str) -> None:
    assert default_table().uri("0.38.0", region) == uri


def test_unknown_region_and_version_fail_naming_what_is_supported() -> None:
    with pytest.raises(UnsupportedImage, match=r"not published in region 'mars-north-1'.*us-east-1"):
        default_table().uri("0.38.0", "mars-north-1")
    with pytest.raises(UnsupportedImage, match=r"known versions: 0\.38\.0"):
        default_table().uri("9.9.9", "us-east-1")
