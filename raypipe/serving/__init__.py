"""Online serving: the functional core of ``raypipe serve`` (no Ray here).

``spec`` says what a service is; ``requests`` parses JSON bodies into rows; ``lookup`` merges
online-store features into them; ``scorer`` scores rows with the batch :class:`Predictor` and
swaps models in place; ``metrics`` renders Prometheus text; ``traffic`` routes requests between
variants; ``requestlog`` logs every request to Parquet; ``sequential`` tests variants while
labels arrive; ``record`` remembers running services for ``raypipe serve status | stop``.
The Ray Serve glue is :mod:`raypipe.engine.serving`.
"""

from __future__ import annotations
