"""Build QA: find the build regressions in crash and performance telemetry, with their causes.

:func:`detect` compares each build's per-session rates (crashes, stalls, slow sessions, …) with
the builds released before it, segment by segment (device family, level, …), day by day since
its release; :mod:`raypipe.buildqa.stage` ranks the findings with the monitoring package's
anomaly explanations and scores them against injected regressions when the truth is known.
"""

from __future__ import annotations

from raypipe.buildqa.detect import Finding, Telemetry, detect, naive_findings, score_findings

__all__ = ["Finding", "Telemetry", "detect", "naive_findings", "score_findings"]
