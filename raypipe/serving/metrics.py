"""Service metrics in Prometheus' text format (exposition format 0.0.4), per replica.

Counters and one latency histogram per variant, kept in plain dicts: updating them costs a few
dictionary operations on the request path, and ``/metrics`` renders them on demand. Every line
carries the replica's id, so a scraper sums replicas itself (each replica answers for itself).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping

__all__ = ["LATENCY_BUCKETS_MS", "ServiceMetrics"]

#: Upper bounds of the latency histogram, milliseconds.
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500)


def _labels(values: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in values.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServiceMetrics:
    """Counters of one replica of service ``service``."""

    def __init__(self, service: str, replica: str) -> None:
        self.base = {"service": service, "replica": replica}
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)
        self.feature_status: dict[tuple[str, str], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.versions: dict[str, str] = {}
        self.swaps = 0
        self.rollbacks = 0

    def observe(self, variant: str, code: str, latency_ms: float, rows: int) -> None:
        """One answered request of ``rows`` rows (``code``: ``200``, ``400``, ``500``)."""
        self.requests[(variant, code)] += 1
        self.rows[variant] += rows
        counts = self.buckets.setdefault(variant, [0] * (len(LATENCY_BUCKETS_MS) + 1))
        counts[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        self.latency_sum[variant] += latency_ms

    def observe_features(self, statuses: list[dict[str, str]]) -> None:
        for row in statuses:
            for view, status in row.items():
                self.feature_status[(view, status)] += 1

    def render(self) -> str:
        """The exposition text."""
        out = [
            "# HELP raypipe_serve_requests_total Requests answered, by variant and HTTP code.",
            "# TYPE raypipe_serve_requests_total counter",
        ]
        for (variant, code), count in sorted(self.requests.items()):
            labels = _labels({**self.base, "variant": variant, "code": code})
            out.append(f"raypipe_serve_requests_total{labels} {count}")
        out += [
            "# HELP raypipe_serve_rows_total Rows scored, by variant.",
            "# TYPE raypipe_serve_rows_total counter",
        ]
        for variant, count in sorted(self.rows.items()):
            out.append(
                f"raypipe_serve_rows_total{_labels({**self.base, 'variant': variant})} {count}"
            )
        out += [
            "# HELP raypipe_serve_latency_ms Time in the replica per request, milliseconds.",
            "# TYPE raypipe_serve_latency_ms histogram",
        ]
        for variant, counts in sorted(self.buckets.items()):
            running = 0
            for bound, count in zip((*LATENCY_BUCKETS_MS, "+Inf"), counts, strict=True):
                running += count
                labels = _labels({**self.base, "variant": variant, "le": str(bound)})
                out.append(f"raypipe_serve_latency_ms_bucket{labels} {running}")
            labels = _labels({**self.base, "variant": variant})
            out.append(f"raypipe_serve_latency_ms_sum{labels} {self.latency_sum[variant]:.3f}")
            out.append(f"raypipe_serve_latency_ms_count{labels} {running}")
        out += [
            "# HELP raypipe_serve_feature_status_total Online feature reads, by view and status.",
            "# TYPE raypipe_serve_feature_status_total counter",
        ]
        for (view, status), count in sorted(self.feature_status.items()):
            labels = _labels({**self.base, "view": view, "status": status})
            out.append(f"raypipe_serve_feature_status_total{labels} {count}")
        out += [
            "# HELP raypipe_serve_model_info The model version each variant serves.",
            "# TYPE raypipe_serve_model_info gauge",
        ]
        for variant, version in sorted(self.versions.items()):
            labels = _labels({**self.base, "variant": variant, "version": version})
            out.append(f"raypipe_serve_model_info{labels} 1")
        out += [
            "# HELP raypipe_serve_model_swaps_total Models reloaded in place after a promotion.",
            "# TYPE raypipe_serve_model_swaps_total counter",
            f"raypipe_serve_model_swaps_total{_labels(self.base)} {self.swaps}",
            "# HELP raypipe_serve_rollbacks_total Variants rolled back for breaking their SLO.",
            "# TYPE raypipe_serve_rollbacks_total counter",
            f"raypipe_serve_rollbacks_total{_labels(self.base)} {self.rollbacks}",
        ]
        return "\n".join(out) + "\n"
