"""The cache key of a stage: what it is, which code runs it, how it is configured, what it reads."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["stage_code_version", "stage_fingerprint"]

logger = logging.getLogger(__name__)


def stage_fingerprint(
    *,
    kind: str,
    options: Mapping[str, Any],
    raypipe_version: str,
    input_versions: Mapping[str, str],
    code_version: str,
) -> str:
    """A hex digest that changes when the kind, its code, options, raypipe or inputs change.

    Parameters
    ----------
    code_version
        The stage class's code version, from :func:`stage_code_version`.

    Examples
    --------
    >>> a = stage_fingerprint(kind="k", options={"x": 1}, raypipe_version="1",
    ...                       input_versions={}, code_version="v1")
    >>> a == stage_fingerprint(kind="k", options={"x": 1}, raypipe_version="1",
    ...                        input_versions={}, code_version="v1")
    True
    >>> a == stage_fingerprint(kind="k", options={"x": 1}, raypipe_version="1",
    ...                        input_versions={}, code_version="v2")
    False
    """
    payload = json.dumps(
        {
            "kind": kind,
            "code": code_version,
            "options": options,
            "raypipe": raypipe_version,
            "inputs": dict(sorted(input_versions.items())),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def stage_code_version(stage_class: type) -> str:
    """The version of the code that runs a stage kind, so editing a stage re-runs it.

    A ``version`` class attribute declared on the class itself wins: its author says when the
    results change (and edits to comments or logging do not invalidate the cache). Otherwise the
    SHA-256 of the source file of the class's module: any edit there re-runs the stage. Code the
    stage calls in other modules is not covered; a stage that depends on such code declares
    ``version``.

    Returns
    -------
    str
        ``version:<declared>``, ``source:<sha256 of the module file>``, or ``module:<name>`` when
        the module has no readable source (the stage is then cached on its other inputs only).
    """
    declared = vars(stage_class).get("version")
    if declared is not None:
        return f"version:{declared}"
    module = sys.modules.get(stage_class.__module__)
    try:
        path = inspect.getsourcefile(module) if module is not None else None
        # The file on disk, not linecache's copy: an edit made while the process runs counts.
        source = Path(path).read_bytes() if path else None
    except (OSError, TypeError):
        source = None
    if source is None:
        logger.debug("stage class %s has no readable source file", stage_class.__qualname__)
        return f"module:{stage_class.__module__}"
    return f"source:{hashlib.sha256(source).hexdigest()}"
