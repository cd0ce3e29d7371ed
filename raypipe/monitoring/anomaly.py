"""When an alert fires, rank its likely causes and say what to do about each.

Offline and rule-based: drifted features weighted by their share of the model's attribution
(mean |SHAP|), segments whose performance fell weighted by their size, and upstream
data-quality failures weighted by the share of rows they touch. An optional hook sends the
ranked causes to an OpenAI-compatible ``/chat/completions`` endpoint for a prose summary.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Cause", "SegmentDrop", "ask_model", "explain_alert"]

logger = logging.getLogger(__name__)

_QUALITY_ACTIONS = {
    "not_null": "nulls appeared in `{subject}`: look for a logging or ingestion bug upstream; "
    "quarantine or impute until it is fixed",
    "range": "values of `{subject}` left their usual range: check units, prices or a changed "
    "producer; retrain if the change is real",
    "allowed_values": "new values in `{subject}`: a new platform, country or version? Add them "
    "to the rules and retrain so the model sees them",
    "regex": "malformed values in `{subject}`: fix the producer or the parser",
    "unique": "duplicated keys in `{subject}`: deduplicate upstream (replayed events?)",
    "columns": "the schema changed: update the feature pipeline or pin the producer's schema",
    "row_count": "row count out of bounds: a partition may be missing or duplicated",
    "freshness": "data is stale: check the ingestion schedule",
}


@dataclass(frozen=True)
class Cause:
    """A likely cause of an alert: its weight (higher ranks first), evidence and action."""

    kind: str
    subject: str
    weight: float
    evidence: str
    action: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentDrop:
    """A segment whose metric fell: ``segment`` like ``platform=web``, its share of rows."""

    segment: str
    metric: str
    baseline: float
    current: float
    share: float


def _severity(column: Any) -> float:
    score, threshold = column.score, column.threshold
    if not math.isfinite(score):
        return 0.0
    if column.method in ("ks", "chisquare", "z"):
        # p-values: how many orders of magnitude below the threshold
        return min(10.0, -math.log10(max(score, 1e-300)) / -math.log10(threshold))
    return min(10.0, score / threshold) if threshold > 0 else 0.0


def explain_alert(
    *,
    drift: Any | None = None,
    importance: Mapping[str, float] | None = None,
    segments: Sequence[SegmentDrop] = (),
    quality: Sequence[Any] = (),
    rows: int | None = None,
) -> list[Cause]:
    """Rank the causes of an alert, most likely first.

    Parameters
    ----------
    drift
        A :class:`~raypipe.monitoring.drift.DriftReport` of the model's inputs.
    importance
        Mean |SHAP| per feature; a drifted feature's weight is its severity times its share.
    segments
        Segments whose performance fell.
    quality
        :class:`~raypipe.validation.checking.RuleResult` items of upstream checks.
    rows
        Rows checked, to turn failing counts into shares.
    """
    causes: list[Cause] = []
    total = sum((importance or {}).values())
    if drift is not None:
        drifted = [c for c in drift.columns if c.drifted]
        for column in drifted:
            share = (importance or {}).get(column.column) if total else None
            if share is not None:
                share = share / total
                attribution = f"; {share:.0%} of the model's attribution"
            elif total:
                attribution = "; not an input of the model (upstream signal only)"
            else:
                attribution = ""
            # without attributions every drifted column counts the same; a column the model
            # does not use still hints at an upstream change, so it keeps a small weight
            weight = _severity(column) * (
                share if share is not None else (0.05 if total else 1 / len(drifted))
            )
            causes.append(
                Cause(
                    "feature_drift",
                    column.column,
                    weight,
                    f"{column.method} = {column.score:.4g} (threshold {column.threshold:g})"
                    + attribution,
                    f"`{column.column}` shifted: compare its reference and current histograms, "
                    "check upstream changes (new categories, units, logging); if the shift is "
                    "real, retrain on recent data"
                    + (" - the model leans on this feature" if share and share > 0.1 else ""),
                )
            )
    for drop in segments:
        change = (drop.current - drop.baseline) / abs(drop.baseline) if drop.baseline else 0.0
        causes.append(
            Cause(
                "segment_performance",
                drop.segment,
                abs(min(change, 0.0)) * 10 * drop.share,
                f"{drop.metric} {drop.baseline:.3f} -> {drop.current:.3f} ({change:+.1%}) on "
                f"{drop.share:.0%} of rows",
                f"performance fell in `{drop.segment}`: inspect its rows and labels, add "
                "features that describe it, or retrain with more of its data",
            )
        )
    for result in quality:
        if result.passed:
            continue
        checked = getattr(result, "rows", 0) or rows
        share = result.failing / checked if checked and result.failing else 1.0
        template = _QUALITY_ACTIONS.get(result.check, "rule `{subject}` failed: inspect it")
        column = getattr(result, "column", "") or result.rule
        subject = result.rule
        causes.append(
            Cause(
                "data_quality",
                subject,
                2.0 * min(1.0, share) + (1.0 if result.policy == "fail" else 0.0),
                f"rule `{result.rule}` ({result.check}, {result.policy}): "
                f"{result.failing} failing {result.detail}".strip(),
                template.format(subject=column),
            )
        )
    return sorted(causes, key=lambda cause: -cause.weight)


def ask_model(
    url: str,
    causes: Sequence[Cause],
    *,
    model: str = "gpt-4o-mini",
    api_key: str | None = None,
    timeout_s: float = 20.0,
) -> str | None:
    """Ask an OpenAI-compatible endpoint (``{url}/chat/completions``) to summarise ``causes``.

    Returns the reply text, or ``None`` (logged) when the endpoint fails: the offline ranking
    stands on its own.
    """
    body = {
        "model": model,
        "messages": [
            {
                "role": "system",
                "content": "You are an ML monitoring assistant. Given ranked likely causes of "
                "a model alert, write a short diagnosis and the next three actions.",
            },
            {"role": "user", "content": json.dumps([c.to_dict() for c in causes])},
        ],
        "temperature": 0,
    }
    request = urllib.request.Request(
        url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {api_key}"} if api_key else {}),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            reply = json.loads(response.read())
        return str(reply["choices"][0]["message"]["content"])
    except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
        logger.warning("the explanation endpoint `%s` failed: %s", url, exc)
        return None
