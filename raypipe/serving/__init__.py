"""Online serving: the functional core of ``raypipe serve`` (no Ray here).

``spec`` says what a service is; ``requests`` parses JSON bodies into rows; ``lookup`` merges
online-store features into them; ``scorer`` scores rows with the batch :class:`Predictor` and
swaps models in place; ``service`` is one replica's whole request path; ``metrics`` renders
Prometheus text; ``traffic`` routes requests between variants and rolls back those that break
their SLO; ``requestlog`` logs every request to Parquet; ``sequential`` tests variants while
labels arrive (mSPRT); ``record`` remembers running services for ``raypipe serve status |
stop``; ``replay`` streams recorded purchases through a service; ``loadgen`` is the load
generator of the tests and the benchmark; ``stage`` is the ``serve.deploy`` stage kind.
The Ray Serve glue is :mod:`raypipe.engine.serving`.
"""

from __future__ import annotations
