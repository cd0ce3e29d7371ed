"""Streaming windows: one window spec computed in batch (polars) and incrementally."""

from __future__ import annotations

from raypipe.features.streaming.state import WindowState
from raypipe.features.streaming.windows import WindowSpec, batch_windows

__all__ = ["WindowSpec", "WindowState", "batch_windows"]
