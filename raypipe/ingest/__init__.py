"""The ``ingest`` stage kind: raw files from any fsspec URL or glob into a committed dataset.

The reading, casting and quarantining of one file is :mod:`raypipe.io.ingest` (the dataset
layer); this package is the stage that fans it out over the backend and commits the result. It
sits above :mod:`raypipe.stages` and :mod:`raypipe.io`, which import neither it nor each other's
stages.
"""

from __future__ import annotations

from raypipe.ingest.stage import IngestOptions, IngestStage

__all__ = ["IngestOptions", "IngestStage"]
