"""The cache key of a stage: what it is, how it is configured and what it reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["stage_fingerprint"]


def stage_fingerprint(
    *,
    kind: str,
    options: Mapping[str, Any],
    raypipe_version: str,
    input_versions: Mapping[str, str],
) -> str:
    """A hex digest that changes when the kind, options, raypipe version or inputs change.

    Examples
    --------
    >>> a = stage_fingerprint(kind="k", options={"x": 1}, raypipe_version="1",
    ...                       input_versions={})
    >>> a == stage_fingerprint(kind="k", options={"x": 1}, raypipe_version="1",
    ...                        input_versions={})
    True
    """
    payload = json.dumps(
        {
            "kind": kind,
            "options": options,
            "raypipe": raypipe_version,
            "inputs": dict(sorted(input_versions.items())),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
