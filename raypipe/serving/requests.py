"""Request bodies in, rows out; scores out as JSON-ready dicts.

One row is a JSON object of columns: the entity key (e.g. ``player_id``) and any fields the
caller knows at request time (``{"player_id": 42, "amount": 9.99}``). A body is one row, or
``{"instances": [row, ...]}`` for a batch. Rows become an Arrow table with exactly the model's
feature columns, so :class:`~raypipe.inference.Predictor` applies the training preprocessing as
it does in batch: numeric features as float64 (null = missing, as in training), categorical
features as strings. A model with only numeric features and no preprocessing state takes its
float32 matrix straight from the rows (:func:`rows_to_matrix`): the same values as the table's
float64-to-float32 cast, without an Arrow table per request, which is most of a small batch's
cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.errors import RaypipeError

__all__ = [
    "MAX_ROWS",
    "ParsedRequest",
    "RequestError",
    "parse_body",
    "rows_to_matrix",
    "rows_to_table",
]

#: A bigger batch belongs in ``raypipe infer``; this bounds one request's memory and latency.
MAX_ROWS = 10_000


class RequestError(RaypipeError):
    """A request body the service cannot score (answered with HTTP 400)."""

    exit_code = 2


@dataclass(frozen=True)
class ParsedRequest:
    """The rows of one request and whether the caller sent a batch."""

    rows: list[dict[str, Any]]
    batch: bool


def parse_body(body: bytes, entity: str) -> ParsedRequest:
    """Parse a JSON body into rows; every row must carry the entity key ``entity``.

    Raises
    ------
    RequestError
        Not JSON, not an object, an empty or oversized batch, or a row without the entity key.
    """
    try:
        document = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(
            f"request body is not JSON: {exc}",
            hint=f'send `{{"{entity}": 42, ...}}` or `{{"instances": [...]}}`',
        ) from exc
    if not isinstance(document, dict):
        raise RequestError(
            f"request body must be a JSON object, received {type(document).__name__}",
            hint=f'send `{{"{entity}": 42, ...}}` or `{{"instances": [...]}}`',
        )
    batch = "instances" in document
    rows = document["instances"] if batch else [document]
    if not isinstance(rows, list) or not rows or len(rows) > MAX_ROWS:
        raise RequestError(
            f"`instances` must be a list of 1 to {MAX_ROWS} objects",
            hint="split larger batches, or score files with `raypipe infer`",
        )
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"instance {index} is not a JSON object")
        if row.get(entity) is None:
            raise RequestError(
                f"instance {index} has no `{entity}` (the service's entity key)",
                hint=f"add `{entity}` to every row; fields: {', '.join(sorted(row)) or '(none)'}",
            )
    return ParsedRequest(rows, batch)


def _number(value: Any, name: str, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    raise RequestError(
        f"instance {index}: feature `{name}` must be a number or null, received "
        f"{json.dumps(value)[:40]}",
        hint="send numbers as JSON numbers; null means missing",
    )


def rows_to_table(
    rows: Sequence[Mapping[str, Any]],
    feature_names: Sequence[str],
    categorical: Sequence[str] = (),
) -> pa.Table:
    """The model's feature columns of ``rows`` (absent fields are null, i.e. missing)."""
    columns: dict[str, pa.Array] = {}
    for name in feature_names:
        if name in categorical:
            values = [None if row.get(name) is None else str(row[name]) for row in rows]
            columns[name] = pa.array(values, pa.string())
        else:
            numbers = [_number(row.get(name), name, i) for i, row in enumerate(rows)]
            columns[name] = pa.array(
                [None if v is not None and math.isnan(v) else v for v in numbers], pa.float64()
            )
    return pa.table(columns)


def rows_to_matrix(rows: Sequence[Mapping[str, Any]], feature_names: Sequence[str]) -> np.ndarray:
    """The numeric features of ``rows`` as a float32 matrix (absent or null fields are NaN)."""
    nan = math.nan
    matrix = np.empty((len(rows), len(feature_names)), dtype=np.float32)
    for i, row in enumerate(rows):
        values = [_number(row.get(name), name, i) for name in feature_names]
        matrix[i] = [nan if v is None else v for v in values]
    return matrix
