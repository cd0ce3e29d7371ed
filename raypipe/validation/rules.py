"""Quality rules: what a dataset must satisfy, loaded from YAML or inferred from a profile.

Row rules (``not_null``, ``range``, ``allowed_values``, ``regex``, ``unique``) mark failing rows
and may quarantine them; dataset rules (``columns``, ``row_count``, ``freshness``) pass or fail
as a whole. Each rule has a policy: ``warn`` (log and go on), ``fail`` (fail the job) or
``quarantine`` (failing rows go to a quarantine dataset with the rule's name; row rules only).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raypipe.errors import SpecError
from raypipe.spec.bounded_yaml import parse_bounded_yaml

__all__ = [
    "AllowedValuesRule",
    "ColumnsRule",
    "FreshnessRule",
    "NotNullRule",
    "RangeRule",
    "RegexRule",
    "RowCountRule",
    "Rule",
    "RuleSetSpec",
    "UniqueRule",
    "parse_duration",
    "read_rules",
    "rules_to_yaml",
]

Policy = Literal["warn", "fail", "quarantine"]


class _RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    policy: Policy = "fail"
    #: Each rule narrows it to its own literal (the tag of the ``Rule`` union).
    check: str

    @property
    def row_level(self) -> bool:
        return False

    @model_validator(mode="after")
    def _policy_fits(self) -> _RuleBase:
        if self.policy == "quarantine" and not self.row_level:
            raise ValueError(
                f"`{self.check}` checks the whole dataset and cannot quarantine rows; "
                "use `warn` or `fail`"
            )
        return self

    def rule_name(self) -> str:
        return self.name or self.default_name()

    def default_name(self) -> str:
        raise NotImplementedError


class _RowRule(_RuleBase):
    @property
    def row_level(self) -> bool:
        return True


class NotNullRule(_RowRule):
    check: Literal["not_null"]
    column: str

    def default_name(self) -> str:
        return f"{self.column}_not_null"


class RangeRule(_RowRule):
    """Values in ``[min, max]`` (either bound optional; ``strict`` excludes the bounds)."""

    check: Literal["range"]
    column: str
    min: float | None = None
    max: float | None = None
    strict: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("`range` needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` {self.min} is greater than `max` {self.max}")
        return self

    def default_name(self) -> str:
        return f"{self.column}_in_range"


class AllowedValuesRule(_RowRule):
    check: Literal["allowed_values"]
    column: str
    values: list[Any]

    def default_name(self) -> str:
        return f"{self.column}_allowed_values"


class RegexRule(_RowRule):
    """Every non-null value fully matches ``pattern``."""

    check: Literal["regex"]
    column: str
    pattern: str

    @model_validator(mode="after")
    def _compiles(self) -> RegexRule:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"`pattern` is not a regular expression: {exc}") from exc
        return self

    def default_name(self) -> str:
        return f"{self.column}_matches"


class UniqueRule(_RowRule):
    """No two rows share the values of ``columns`` (every row of a duplicated key fails)."""

    check: Literal["unique"]
    columns: list[str] = Field(min_length=1)

    def default_name(self) -> str:
        return f"{'_'.join(self.columns)}_unique"


class ColumnsRule(_RuleBase):
    """Required columns, with their Arrow type names (``int64``, ``string``; ``null``: any)."""

    check: Literal["columns"]
    required: dict[str, str | None]
    allow_extra: bool = True

    def default_name(self) -> str:
        return "columns"


class RowCountRule(_RuleBase):
    check: Literal["row_count"]
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    def default_name(self) -> str:
        return "row_count"


class FreshnessRule(_RuleBase):
    """The newest value of ``column`` is at most ``max_lag`` (``2d``, ``6h``) before ``now``."""

    check: Literal["freshness"]
    column: str
    max_lag: str
    now: dt.datetime | None = None

    @model_validator(mode="after")
    def _lag(self) -> FreshnessRule:
        parse_duration(self.max_lag)
        return self

    def default_name(self) -> str:
        return f"{self.column}_fresh"


Rule = Annotated[
    NotNullRule
    | RangeRule
    | AllowedValuesRule
    | RegexRule
    | UniqueRule
    | ColumnsRule
    | RowCountRule
    | FreshnessRule,
    Field(discriminator="check"),
]


class RuleSetSpec(BaseModel):
    """A rules file: ``rules: [...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule]

    @model_validator(mode="after")
    def _valid(self) -> RuleSetSpec:
        names = [rule.rule_name() for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"6h"``, ``"2d"``, ``"1w"`` -> timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise ValueError(f"duration `{text}` is not like `30m`, `6h` or `2d`")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def read_rules(source: str | Path | Mapping[str, Any]) -> RuleSetSpec:
    """Load a rules YAML file (or an already parsed mapping); every problem at once."""
    where = str(source) if not isinstance(source, Mapping) else "<rules>"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise SpecError([f"cannot read rules file `{where}`: {exc}"], source=where) from exc
        data = parse_bounded_yaml(text, where)
    if not isinstance(data, Mapping):
        received = f"a list of {len(data)} item(s)" if isinstance(data, list) else repr(data)[:40]
        raise SpecError(
            [f"`{where}`: expected a mapping with a `rules:` key, received {received}"],
            source=where,
            hint="put the list under `rules:` (`--write-rules FILE` writes a file of this shape)",
        )
    try:
        return RuleSetSpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{where}: {'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise SpecError(problems, source=where) from exc


def rules_to_yaml(rules: Sequence[Any]) -> str:
    """The YAML text of ``rules`` (what :func:`read_rules` reads back)."""
    items = [
        rule.model_dump(mode="json", exclude_defaults=False, exclude_none=True) for rule in rules
    ]
    for item, rule in zip(items, rules, strict=True):
        item["name"] = rule.rule_name()
    return yaml.safe_dump({"rules": items}, sort_keys=False)
