"""A config field's rule is both its check and its range in the reference: the same object says both."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from stacks.config import AppConfig, ConfigError
from stacks.config.fields import BARE, Bounds, Matches, OneOf, check_fields, setting


@dataclasses.dataclass(frozen=True)
class Example:
    most: int = setting(4, Bounds(1))
    count: int = setting(1, Bounds(1, "most"))
    share: float = setting(0.5, Bounds(0, 1, low_open=True, spelled="in (0, 1]"))
    size: int = setting(30, Bounds(1, template=BARE))
    kind: str = setting("a", OneOf(("a", "b")))
    name: str | None = setting(None, Matches(r"[a-z]+", "lower-case letters"))
    extra: Mapping[str, int] = setting({})

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        ({"most": 0}, "most", "must be >= 1, got 0"),
        ({"count": 5}, "count", "must be 1..most (4), got 5"),
        ({"share": 0}, "share", "must be in (0, 1], got 0"),
        ({"size": 0}, "size", "must be >= 1"),
        ({"kind": "c"}, "kind", "must be one of 'a', 'b', got 'c'"),
        ({"name": "A1"}, "name", "must be lower-case letters, got 'A1'"),
    ],
)
def test_a_rule_refuses_a_value_with_its_own_message(values: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Example(**values)
    assert (caught.value.key, caught.value.reason) == (key, message)


def test_a_rule_relative_to_another_field_waits_for_that_fields_own_check() -> None:
    # `count` reads `most`: a bad `most` is reported as itself, not as a confusing range of `count`
    with pytest.raises(ConfigError) as caught:
        Example(most=0, count=1)
    assert caught.value.key == "most"


def test_a_rule_reads_in_the_reference_as_the_error_spells_it() -> None:
    rules = {f.name: f.metadata.get("rule") for f in dataclasses.fields(Example)}
    assert rules["most"].describe() == "\N{GREATER-THAN OR EQUAL TO} 1"
    assert rules["count"].describe() == "1\N{EN DASH}`most`"
    assert rules["share"].describe() == "in (0, 1]"
    assert rules["kind"].describe() == "`a`, `b`"
    assert rules["name"].describe() == "lower-case letters"
    assert rules["extra"] is None


def test_a_null_optional_value_and_a_default_dict_are_fine() -> None:
    first, second = Example(), Example()
    assert first.name is None
    assert first.extra == {} and first.extra is not second.extra


def test_every_section_declares_its_ranges_as_rules() -> None:
    # A section that went back to hand-written range checks would leave the reference without ranges
    config = AppConfig()
    sections = [f.name for f in dataclasses.fields(AppConfig) if dataclasses.is_dataclass(getattr(config, f.name))]
    unruled = [
        name
        for name in ["", *sections]
        if not any(f.metadata.get("rule") for f in dataclasses.fields(getattr(config, name) if name else config))
    ]
    assert unruled == []
