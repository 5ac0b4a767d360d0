"""How a config field declares what it accepts: one rule that both validates the value and reads in the reference.

A section field is declared with `setting(default, rule)`, and its description is the attribute docstring under
it (PEP 257's attribute docstrings, as scikit-build-core documents its settings):

    batch_size: int = setting(4, Bounds(1, constants.SQS_MAX_BATCH_SIZE))
    \"\"\"SQS records per invocation.\"\"\"

The section's `__post_init__` calls `check_fields(self)` where its own checks want the rules to run; the
configuration reference (docs/reference/configuration.md, written by `python -m tools.docs`) prints each rule with
`describe()`. A rule's error message is a template, so each one keeps the exact wording the deployer has always
seen; rules that relate several fields or depend on another field's value stay in `__post_init__` and are told in
the field's description.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from stacks.config.parsing import ConfigError

RULE = "rule"  # the dataclass field metadata key that holds a field's rule

# Error templates: {range} / {what} is the rule's own text, {value} the value found.
WITH_VALUE = "must be {range}, got {value}"
BARE = "must be {range}"
MATCH_WITH_VALUE = "must be {what}, got {value!r}"


def setting(default: Any, rule: Bounds | OneOf | Matches | None = None) -> Any:
    """A dataclass field with its default (a fresh copy for a dict or list) and the rule its value must meet."""
    metadata = {RULE: rule} if rule is not None else {}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Bounds:
    """A number's range. `low`/`high` are numbers or the name of another field of the same section (its value at
    validation time, e.g. `Bounds(1, "max_instance_count")`); `low_open` makes the low end exclusive."""

    low: float | str | None = None
    high: float | str | None = None
    low_open: bool = False
    why: str = ""  # appended to the range in the error, e.g. "(SageMaker's limit)"
    spelled: str | None = None  # the range in words when low..high does not say it ("between 0 and 1")
    template: str = WITH_VALUE

    def _end(self, section: Any, end: float | str) -> tuple[float, str]:
        """The bound's value and its text in an error."""
        if isinstance(end, str):
            value = getattr(section, end)
            return value, f"{end} ({value})"
        return end, str(end)

    def _spell(self, low: str | None, high: str | None) -> str:
        if self.spelled is not None:
            return self.spelled
        if low is not None and high is not None:
            return f"{low}..{high}"
        if low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"<= {high}"

    def check(self, section: Any, name: str) -> None:
        value = getattr(section, name)
        if value is None:
            return
        low = self._end(section, self.low) if self.low is not None else None
        high = self._end(section, self.high) if self.high is not None else None
        below = low is not None and (value <= low[0] if self.low_open else value < low[0])
        above = high is not None and value > high[0]
        if below or above:
            spelled = self._spell(low[1] if low else None, high[1] if high else None)
            text = f"{spelled} {self.why}" if self.why else spelled
            raise ConfigError(name, self.template.format(range=text, value=value))

    def describe(self) -> str:
        low, high = (
            None if end is None else f"`{end}`" if isinstance(end, str) else str(end)
            for end in (self.low, self.high)
        )
        text = self._spell(low, high).replace("..", "\N{EN DASH}")
        return text.replace(">=", "\N{GREATER-THAN OR EQUAL TO}").replace("<=", "\N{LESS-THAN OR EQUAL TO}")


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    choices: tuple[Any, ...]

    def check(self, section: Any, name: str) -> None:
        value = getattr(section, name)
        if value not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            raise ConfigError(name, f"must be one of {allowed}, got {value!r}")

    def describe(self) -> str:
        return ", ".join(f"`{choice}`" for choice in self.choices)


@dataclass(frozen=True)
class Matches:
    """A string that matches `pattern` in full; `what` says in words what that is (the error and the reference)."""

    pattern: str
    what: str
    template: str = MATCH_WITH_VALUE

    def check(self, section: Any, name: str) -> None:
        value = getattr(section, name)
        if value is not None and not re.fullmatch(self.pattern, value, flags=re.DOTALL):
            raise ConfigError(name, self.template.format(what=self.what, value=value))

    def describe(self) -> str:
        return self.what


def rule_of(field: dataclasses.Field[Any]) -> Bounds | OneOf | Matches | None:
    return field.metadata.get(RULE)


def check_fields(section: Any) -> None:
    """Check every field's rule, in declaration order; rules that read another field's value go last, once that
    field has passed its own."""
    ruled = [(f.name, rule) for f in dataclasses.fields(section) if (rule := rule_of(f)) is not None]
    relative = [
        (name, rule)
        for name, rule in ruled
        if isinstance(rule, Bounds) and (isinstance(rule.low, str) or isinstance(rule.high, str))
    ]
    for name, rule in [item for item in ruled if item not in relative] + relative:
        rule.check(section, name)
