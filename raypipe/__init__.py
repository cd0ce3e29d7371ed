"""raypipe: machine-learning pipelines as Ray jobs."""

from __future__ import annotations

from raypipe.errors import RaypipeError

__version__ = "0.1.0"

__all__ = ["RaypipeError", "__version__"]
