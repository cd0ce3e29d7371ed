"""Run quality rules over a committed dataset, in tasks per group of files.

Pass one evaluates every rule on each group (failing counts, examples, newest timestamps, key
hashes of ``unique`` rules); the driver merges them and finds duplicated keys. Pass two (when
there are duplicates to locate, or outputs to write) re-evaluates with the global duplicate set
and writes passing rows to ``data`` and rows broken by ``quarantine`` rules to ``quarantine``
with a ``_rule`` column naming the rules they broke.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from raypipe.io.manifest import FileEntry, Manifest
from raypipe.stages.base import Executor
from raypipe.validation.profiling import file_groups
from raypipe.validation.rules import (
    AllowedValuesRule,
    ColumnsRule,
    FreshnessRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    RowCountRule,
    RuleSetSpec,
    UniqueRule,
    parse_duration,
)

__all__ = ["CheckReport", "RuleResult", "check_table", "run_check"]

logger = logging.getLogger(__name__)

#: Failing rows shown per rule.
EXAMPLES = 5
RULE_COLUMN = "_rule"


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict: failing rows (row rules) and a few examples."""

    rule: str
    check: str
    policy: str
    passed: bool
    failing: int = 0
    examples: tuple[Mapping[str, Any], ...] = ()
    detail: str = ""
    #: Rows of the checked dataset (the denominator of ``failing``).
    rows: int = 0
    #: The column(s) the rule looks at, comma separated ("" for dataset rules).
    column: str = ""


@dataclass(frozen=True)
class CheckReport:
    """Every rule's result; ``failed`` lists the ``fail``-policy rules that did not pass."""

    rows: int
    results: tuple[RuleResult, ...]
    quarantined: int = 0
    outputs: Mapping[str, Manifest] = field(default_factory=dict)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed and r.policy == "fail"]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed and r.policy == "warn"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "rules": [asdict(result) for result in self.results],
        }

    def to_table(self) -> pa.Table:
        import json

        return pa.Table.from_pylist(
            [
                {
                    "rule": r.rule,
                    "check": r.check,
                    "policy": r.policy,
                    "passed": r.passed,
                    "failing": r.failing,
                    "detail": r.detail,
                    "examples": json.dumps(list(r.examples), default=str),
                    "rows": self.rows,
                    "column": r.column,
                }
                for r in self.results
            ],
            schema=pa.schema(
                [
                    ("rule", pa.string()),
                    ("check", pa.string()),
                    ("policy", pa.string()),
                    ("passed", pa.bool_()),
                    ("failing", pa.int64()),
                    ("detail", pa.string()),
                    ("examples", pa.string()),
                    ("rows", pa.int64()),
                    ("column", pa.string()),
                ]
            ),
        )


def _mask(rule: Any, frame: pl.DataFrame, duplicates: Mapping[str, np.ndarray]) -> pl.Series:
    """True where the row breaks ``rule`` (a row rule)."""
    missing = [c for c in _columns(rule) if c not in frame.columns]
    if missing:
        return pl.Series([True] * frame.height, dtype=pl.Boolean)
    if isinstance(rule, UniqueRule):
        found = duplicates.get(rule.rule_name())
        if found is None or not len(found):
            return pl.Series([False] * frame.height, dtype=pl.Boolean)
        hashes = _key_hash(frame, rule.columns)
        return hashes.is_in(pl.Series(found, dtype=pl.UInt64))
    column = pl.col(rule.column)
    if isinstance(rule, NotNullRule):
        expr = column.is_null()
    elif isinstance(rule, RangeRule):
        bad = pl.lit(False)
        if rule.min is not None:
            bad = bad | ((column <= rule.min) if rule.strict else (column < rule.min))
        if rule.max is not None:
            bad = bad | ((column >= rule.max) if rule.strict else (column > rule.max))
        if frame.schema[rule.column].is_float():
            bad = bad | column.is_nan()
        expr = column.is_not_null() & bad
    elif isinstance(rule, AllowedValuesRule):
        values = pl.Series(rule.values)
        dtype = frame.schema[rule.column]
        expr = column.is_not_null() & ~column.is_in(values.cast(dtype, strict=False))
    elif isinstance(rule, RegexRule):
        text = column.cast(pl.String)
        expr = column.is_not_null() & ~text.str.contains(f"^(?:{rule.pattern})$")
    else:  # pragma: no cover - the union is closed
        raise TypeError(type(rule).__name__)
    return frame.select(expr.fill_null(False).alias("m")).to_series()


def _columns(rule: Any) -> list[str]:
    return list(rule.columns) if isinstance(rule, UniqueRule) else [rule.column]


def _key_hash(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    return frame.select(pl.struct(list(columns)).hash(seed=0).alias("h")).to_series()


def _examples(frame: pl.DataFrame, mask: pl.Series) -> list[dict[str, Any]]:
    rows = frame.filter(mask).head(EXAMPLES).to_dicts()
    return [
        {
            k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
            for k, v in row.items()
        }
        for row in rows
    ]


@dataclass(frozen=True)
class _Part:
    rows: int
    failing: Mapping[str, int]
    examples: Mapping[str, list[dict[str, Any]]]
    newest: Mapping[str, Any]
    hashes: Mapping[str, np.ndarray]
    entries: tuple[tuple[str, tuple[FileEntry, ...]], ...] = ()


def _evaluate(
    frame: pl.DataFrame, rules: RuleSetSpec, duplicates: Mapping[str, np.ndarray]
) -> tuple[_Part, dict[str, pl.Series]]:
    failing, examples, newest, hashes, masks = {}, {}, {}, {}, {}
    for rule in rules.rules:
        name = rule.rule_name()
        if isinstance(rule, FreshnessRule):
            if rule.column in frame.columns:
                newest[name] = frame.get_column(rule.column).max()
            continue
        if not rule.row_level:
            continue
        if isinstance(rule, UniqueRule) and all(c in frame.columns for c in rule.columns):
            hashes[name] = _key_hash(frame, rule.columns).to_numpy()
        mask = _mask(rule, frame, duplicates)
        masks[name] = mask
        failing[name] = int(mask.sum())
        examples[name] = _examples(frame, mask) if failing[name] else []
    return _Part(frame.height, failing, examples, newest, hashes), masks


def _check_part(
    item: tuple[FileEntry, ...],
    *,
    url: str,
    rules: RuleSetSpec,
    duplicates: Mapping[str, np.ndarray],
    writers: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
) -> _Part:
    from raypipe.io.dataset import read_dataset

    table = read_dataset(url, files=list(item), storage_options=storage_options)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    part, masks = _evaluate(frame, rules, duplicates)
    if not writers:
        return part
    names = [r.rule_name() for r in rules.rules if r.policy == "quarantine"]
    broken = pl.DataFrame({n: masks[n] for n in names}) if names else None
    entries = []
    token = item[0].path if item else "empty"
    if broken is not None:
        any_broken = broken.select(pl.any_horizontal(pl.all()).alias("b")).to_series()
        labels = broken.select(
            pl.concat_str(
                [pl.when(pl.col(n)).then(pl.lit(n)) for n in names],
                separator=",",
                ignore_nulls=True,
            ).alias(RULE_COLUMN)
        ).to_series()
        bad = frame.with_columns(labels).filter(any_broken)
        good = frame.filter(~any_broken)
        entries.append(("quarantine", tuple(writers["quarantine"].write(bad.to_arrow(), token))))
    else:
        good = frame
    entries.append(("data", tuple(writers["data"].write(good.to_arrow(), token))))
    return _Part(part.rows, part.failing, part.examples, part.newest, part.hashes, tuple(entries))


def check_table(
    table: pa.Table, rules: RuleSetSpec, *, now: dt.datetime | None = None
) -> CheckReport:
    """Check an in-memory table (single process); the oracle of :func:`run_check`."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    first, _ = _evaluate(frame, rules, {})
    duplicates = _duplicates([first], rules)
    part, _ = _evaluate(frame, rules, duplicates) if duplicates else (first, None)
    return _report([part], rules, table.schema, table.num_rows, now)


def run_check(
    url: str,
    manifest: Manifest,
    rules: RuleSetSpec,
    executor: Executor,
    *,
    data_url: str | None = None,
    quarantine_url: str | None = None,
    now: dt.datetime | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> CheckReport:
    """Check the committed dataset at ``url``; write ``data``/``quarantine`` when URLs are given."""
    from raypipe.io.dataset import DatasetWriter

    storage = dict(storage_options or {}) or None
    groups = file_groups(manifest, executor.parallelism)
    task = partial(_check_part, url=url, rules=rules, storage_options=storage)
    parts = (
        executor.map(
            partial(task, duplicates={}, writers={}), groups, name="check:evaluate", num_cpus=1.0
        )
        if groups
        else []
    )
    duplicates = _duplicates(parts, rules)
    writers: dict[str, Any] = {}
    if data_url is not None:
        writers["data"] = DatasetWriter(
            data_url, partition_by=manifest.partition_by, storage_options=storage
        )
        if quarantine_url is not None:
            writers["quarantine"] = DatasetWriter(
                quarantine_url, partition_by=manifest.partition_by, storage_options=storage
            )
    if groups and (duplicates or writers):
        parts = executor.map(
            partial(task, duplicates=duplicates, writers=writers),
            groups,
            name="check:apply",
            num_cpus=1.0,
        )
    report = _report(parts, rules, manifest.schema, manifest.rows, now)
    outputs: dict[str, Manifest] = {}
    if writers:
        for name, writer in writers.items():
            entries = [e for part in parts for out, es in part.entries if out == name for e in es]
            schema = manifest.schema
            if name == "quarantine":
                schema = schema.append(pa.field(RULE_COLUMN, pa.string()))
            # The rows that go on keep the source's metadata (cutoff, clustering: groups hold
            # whole parts, one output part per group).
            metadata = {**manifest.metadata, "source_version": manifest.version}
            outputs[name] = writer.commit(entries, schema=schema, metadata=metadata)
    quarantined = outputs["quarantine"].rows if "quarantine" in outputs else 0
    return CheckReport(report.rows, report.results, quarantined, outputs)


def _duplicates(parts: Sequence[_Part], rules: RuleSetSpec) -> dict[str, np.ndarray]:
    out = {}
    for rule in rules.rules:
        if isinstance(rule, UniqueRule):
            name = rule.rule_name()
            arrays = [part.hashes[name] for part in parts if name in part.hashes]
            if arrays:
                values, counts = np.unique(np.concatenate(arrays), return_counts=True)
                found = values[counts > 1]
                if len(found):
                    out[name] = found
    return out


def _report(
    parts: Sequence[_Part],
    rules: RuleSetSpec,
    schema: pa.Schema,
    rows: int,
    now: dt.datetime | None,
) -> CheckReport:
    results = []
    for rule in rules.rules:
        name = rule.rule_name()
        base: dict[str, Any] = {
            "rule": name,
            "check": rule.check,
            "policy": rule.policy,
            "rows": rows,
            "column": ",".join(_columns(rule)) if rule.row_level or hasattr(rule, "column") else "",
        }
        if rule.row_level:
            failing = sum(part.failing.get(name, 0) for part in parts)
            examples = [e for part in parts for e in part.examples.get(name, [])][:EXAMPLES]
            missing = [c for c in _columns(rule) if c not in schema.names]
            detail = f"missing column(s): {', '.join(missing)}" if missing else ""
            results.append(
                RuleResult(
                    **base,
                    passed=failing == 0,
                    failing=failing,
                    examples=tuple(examples),
                    detail=detail,
                )
            )
        elif isinstance(rule, ColumnsRule):
            results.append(_columns_result(rule, schema, base))
        elif isinstance(rule, RowCountRule):
            low_ok = rule.min is None or rows >= rule.min
            high_ok = rule.max is None or rows <= rule.max
            results.append(
                RuleResult(
                    **base,
                    passed=low_ok and high_ok,
                    detail=f"{rows} rows; expected [{rule.min}, {rule.max}]",
                )
            )
        elif isinstance(rule, FreshnessRule):
            results.append(_freshness_result(rule, parts, now, base))
    return CheckReport(rows, tuple(results))


def _columns_result(rule: ColumnsRule, schema: pa.Schema, base: dict[str, Any]) -> RuleResult:
    problems = []
    for column, type_name in rule.required.items():
        if column not in schema.names:
            problems.append(f"`{column}` is missing")
        elif type_name and str(schema.field(column).type) != type_name:
            problems.append(f"`{column}` is {schema.field(column).type}, expected {type_name}")
    if not rule.allow_extra:
        extra = [name for name in schema.names if name not in rule.required]
        problems += [f"unexpected column `{name}`" for name in extra]
    return RuleResult(
        **base, passed=not problems, failing=len(problems), detail="; ".join(problems)
    )


def _freshness_result(
    rule: FreshnessRule, parts: Sequence[_Part], now: dt.datetime | None, base: dict[str, Any]
) -> RuleResult:
    name = rule.rule_name()
    values = [part.newest[name] for part in parts if part.newest.get(name) is not None]
    if not values:
        return RuleResult(**base, passed=False, detail=f"no values in `{rule.column}`")
    newest = max(values)
    if isinstance(newest, dt.date) and not isinstance(newest, dt.datetime):
        newest = dt.datetime.combine(newest, dt.time())
    reference = rule.now or now or dt.datetime.now(dt.timezone.utc)
    if newest.tzinfo is None and reference.tzinfo is not None:
        newest = newest.replace(tzinfo=dt.timezone.utc)
    if reference.tzinfo is None and newest.tzinfo is not None:
        reference = reference.replace(tzinfo=dt.timezone.utc)
    lag = reference - newest
    limit = parse_duration(rule.max_lag)
    return RuleResult(
        **base,
        passed=lag <= limit,
        detail=f"newest {newest.isoformat()}, lag {lag}, allowed {limit}",
    )
