"""Infer quality rules from a reference profile (TFDV's ``infer_schema``, in rules form)."""

from __future__ import annotations

from typing import Any

from raypipe.validation.profiling import DatasetProfile
from raypipe.validation.rules import (
    AllowedValuesRule,
    ColumnsRule,
    NotNullRule,
    Policy,
    RangeRule,
    RowCountRule,
    UniqueRule,
)

__all__ = ["MAX_DOMAIN_SIZE", "infer_rules"]

#: String columns with at most this many distinct values get an allowed-values rule
#: (TFDV's ``max_string_domain_size``).
MAX_DOMAIN_SIZE = 100


def infer_rules(
    profile: DatasetProfile,
    *,
    policy: Policy = "warn",
    row_count_slack: float = 2.0,
) -> list[Any]:
    """Rules that the reference dataset of ``profile`` satisfies.

    The column/type rule fails the job; every other inferred rule uses ``policy`` (``warn`` by
    default: a reference is evidence, not a contract). Row counts may vary by
    ``row_count_slack`` either way.
    """
    rules: list[Any] = [
        ColumnsRule(
            check="columns",
            required={name: column.type for name, column in profile.columns.items()},
            policy="fail",
        )
    ]
    for name, column in profile.columns.items():
        if column.rows and column.nulls == 0:
            rules.append(NotNullRule(check="not_null", column=name, policy=policy))
        if column.kind == "numeric" and column.n:
            rules.append(
                RangeRule(
                    check="range",
                    column=name,
                    min=float(column.min),
                    max=float(column.max),
                    policy=policy,
                )
            )
        if (
            column.kind == "categorical"
            and column.values is not None
            and 0 < len(column.values) <= MAX_DOMAIN_SIZE
        ):
            values = sorted(str(value) for value, _ in column.values)
            rules.append(
                AllowedValuesRule(check="allowed_values", column=name, values=values, policy=policy)
            )
        non_null = column.rows - column.nulls
        unique = (
            column.distinct == non_null
            if column.distinct_is_exact
            else column.distinct >= 0.98 * non_null
        )
        keyish = column.kind in ("numeric", "categorical") and column.nulls == 0
        if keyish and non_null > 1 and unique:
            rules.append(UniqueRule(check="unique", columns=[name], policy=policy))
    rows = profile.rows
    rules.append(
        RowCountRule(
            check="row_count",
            min=int(rows / row_count_slack),
            max=int(rows * row_count_slack) if rows else None,
            # dataset rules cannot quarantine rows
            policy="warn" if policy == "quarantine" else policy,
        )
    )
    return rules
