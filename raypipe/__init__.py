"""raypipe: machine-learning pipelines as Ray jobs."""

from __future__ import annotations

from raypipe.errors import RaypipeError

#: The one source of the version: pyproject.toml reads it (``dynamic = ["version"]``), the CLI,
#: the cache keys and the tracking tags all use it.
__version__ = "0.1.0"

__all__ = ["RaypipeError", "__version__"]
