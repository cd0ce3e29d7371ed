"""Record a finished training run in MLflow and move it through the registry.

Parent run (lineage tags, chosen model's holdout metrics, report), one nested run per trial
(params, per-round validation metric, status), the chosen model logged in its flavor, a new
registered version aliased ``challenger``, and the blessing gate deciding ``champion``. The
current champion is re-scored on this run's test rows when it can be (same data, same rows);
otherwise its recorded metric is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raypipe.tracking.audit import AuditLog, ConcurrentChangeError
from raypipe.tracking.models import model_file_name
from raypipe.tracking.registry import CHALLENGER, CHAMPION, GateDecision, Registry, bless
from raypipe.tracking.runs import (
    TrackingSession,
    git_commit,
    global_tracking_uri,
    raypipe_version,
)

__all__ = ["GateSpec", "PublishResult", "publish_training"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateSpec:
    """The blessing gate: ``metric`` passes ``threshold``, trails the champion by <= ``margin``."""

    metric: str = "roc_auc"
    threshold: float | None = 0.6
    margin: float = 0.01
    maximize: bool = True
    promote: bool = True


@dataclass(frozen=True)
class PublishResult:
    run_id: str
    model_uri: str
    model_name: str
    version: str
    sha256: str
    gate: GateDecision
    promoted: bool
    champion_version: str | None


def publish_training(**kwargs: Any) -> PublishResult:
    """Log everything, register the chosen model as ``challenger``, and gate ``champion``.

    Keyword arguments are those of :func:`_publish`; MLflow's global URIs point at
    ``tracking_uri`` while it runs (the registry resolves logged models through them).
    """
    with global_tracking_uri(kwargs["tracking_uri"]):
        return _publish(**kwargs)


def _publish(
    *,
    tracking_uri: str,
    experiment: str,
    model_name: str,
    run_name: str,
    lineage: Mapping[str, str],
    trials: list[Any],
    candidate_metrics: Mapping[str, Mapping[str, Any]],
    chosen: Any,
    chosen_metrics: Mapping[str, Any],
    model_files: Mapping[str, bytes],
    input_example: Any,
    feature_names: list[str],
    report_html: str,
    audit_log: AuditLog,
    gate: GateSpec,
    champion_scorer: Callable[[str], float | None] | None = None,
    score_name: str = "valid_auc",
) -> PublishResult:
    session = TrackingSession(tracking_uri, experiment)
    tags = {
        **{f"raypipe.{k}": v for k, v in lineage.items()},
        "raypipe.version": raypipe_version(),
        "raypipe.git_commit": git_commit(),
    }
    parent = session.start_run(run_name, tags=tags)
    for trial in trials:
        child = session.start_run(
            f"{trial.candidate}-{trial.trial_id}-r{trial.rung}", parent_run_id=parent, tags=tags
        )
        metric_key = score_name
        session.log(
            child,
            params={
                **trial.params,
                "candidate": trial.candidate,
                "row_fraction": trial.row_fraction,
                "rung": trial.rung,
                "seed": trial.seed,
            },
            metrics={
                metric_key: trial.score,
                "train_s": trial.train_s,
                "best_iteration": trial.best_iteration or 0,
            },
            series={f"{metric_key}_per_round": list(trial.history)} if trial.history else None,
            tags={"raypipe.trial_error": trial.error.splitlines()[0]} if trial.error else None,
        )
        session.end_run(child, failed=not trial.ok)
    flat = {f"{c}.test_{k}": v for c, m in candidate_metrics.items() for k, v in m.items()}
    session.log(
        parent,
        params={
            "candidate": chosen.candidate,
            **{f"best.{k}": v for k, v in chosen.params.items()},
        },
        metrics={**{f"test_{k}": v for k, v in chosen_metrics.items()}, **flat},
    )
    session.log_text(parent, report_html, "report.html")
    session.log_text(parent, json.dumps(_jsonable(chosen_metrics), indent=2), "metrics.json")
    model_bytes = model_files[model_file_name(chosen.model_format)]
    logged = session.log_model(
        parent,
        model_bytes=model_bytes,
        model_format=chosen.model_format,
        feature_names=feature_names,
        input_example=input_example,
        predictions=chosen.predictions.get("valid", [])[: len(input_example)],
        extra_files={k: v for k, v in model_files.items() if k == "preprocess.json"},
    )
    registry = Registry(tracking_uri, audit_log)
    metric_value = float(chosen_metrics.get(gate.metric, float("nan")))
    version = registry.register(
        model_name,
        logged.model_uri,
        run_id=parent,
        tags={
            "raypipe.sha256": logged.sha256,
            "raypipe.model_file": logged.model_file,
            "raypipe.format": logged.format,
            "raypipe.candidate": chosen.candidate,
            "raypipe.preprocess_sha256": hashlib.sha256(
                model_files.get("preprocess.json", b"")
            ).hexdigest(),
            f"raypipe.metric.{gate.metric}": metric_value,
            **{f"raypipe.{k}": v for k, v in lineage.items()},
        },
    )
    _set_challenger(
        registry,
        model_name,
        version,
        reason=f"trained by run {lineage.get('run_id', parent)}: {gate.metric}={metric_value:.4f}",
    )
    champion = registry.alias_version(model_name, CHAMPION)
    champion_value = None
    if champion is not None:
        champion_value = (
            champion_scorer(f"models:/{model_name}/{champion}") if champion_scorer else None
        )
        if champion_value is None:
            recorded = registry.version_tags(model_name, champion).get(
                f"raypipe.metric.{gate.metric}"
            )
            champion_value = float(recorded) if recorded is not None else None
    decision = bless(
        metric_value,
        metric=gate.metric,
        threshold=gate.threshold,
        champion_value=champion_value,
        margin=gate.margin,
        maximize=gate.maximize,
    )
    promoted = False
    if decision.passed and gate.promote:
        try:
            # Only over the champion the gate compared with: if it moved meanwhile, the
            # comparison no longer holds and the new version stays challenger.
            registry.promote(
                model_name,
                version,
                reason=f"blessed: {gate.metric}={metric_value:.4f} (threshold {gate.threshold}, "
                f"champion {_fmt(champion_value)}, margin {gate.margin})",
                expected_previous=champion,
            )
            promoted = True
            champion = version
        except ConcurrentChangeError as exc:
            logger.warning("version %s of `%s` not promoted: %s", version, model_name, exc.message)
            champion = registry.alias_version(model_name, CHAMPION)
    elif not decision.passed:
        registry.record_refusal(model_name, version, "; ".join(decision.reasons))
    session.log(
        parent,
        tags={
            "raypipe.model_version": version,
            "raypipe.promoted": promoted,
            "raypipe.gate": "passed" if decision.passed else "; ".join(decision.reasons),
        },
    )
    session.end_run(parent)
    return PublishResult(
        run_id=parent,
        model_uri=f"models:/{model_name}/{version}",
        model_name=model_name,
        version=version,
        sha256=logged.sha256,
        gate=decision,
        promoted=promoted,
        champion_version=champion,
    )


def _set_challenger(registry: Registry, name: str, version: str, *, reason: str) -> None:
    """Make ``version`` the challenger: the newest trained wins, so a lost race is retried."""
    for attempt in range(5):
        try:
            registry.set_alias(name, CHALLENGER, version, action="register", reason=reason)
            return
        except ConcurrentChangeError:
            if attempt == 4:
                raise


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def _jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
