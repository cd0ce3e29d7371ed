"""Continual learning: six simulated months, drift in month 4, the watch loop against no trigger.

Data: ``synth.game_telemetry`` month by month (``--players`` players, 30 days of history to each
month's cutoff, one seed per month), the churn training set of its default features, and the
generator's exact churn probability (the Bayes AUC of the month). From month ``--drift-month``
on, a logging bug blanks 40 % of ``event_type``, a ``web`` platform launches, prices double, and
a guild update turns social activity around (``DriftConfig.social_by_level``: social events per
session now peak among the least engaged players). The first three are covariate shift and lost
information, which the first champion mostly rides out and a retrained model cannot win back;
the last changes the relation between a feature and churn, which hurts the champion (its AUC
falls well below the month's Bayes AUC) and which a model retrained on the drifted month learns.

Two runs on the same months, both starting from one champion trained on month 1:

(a) no trigger  the first champion serves every month;
(b) watch loop  :class:`raypipe.tracking.continual.WatchLoop` (drift share 0.1, performance
                drop 5 %, cool-down 2 periods) retrains on the last 3 months when a trigger
                fires; the challenger must beat the champion on the month's fresh holdout and
                not trail it by > 0.02 on a replay of older months; an approver approves at
                once. The XGBoost challenger is trained from scratch (``--warm-start``:
                continued from the champion); both variants are measured and recorded.

Reported per month: the serving champion, its AUC on the month's holdout rows, the same for
(a), and the Bayes AUC; overall: the months the drifted model would have served without the
trigger, the retrains, and the AUC recovered ((b) - (a)) and the remaining gap to Bayes after the
promotion.

Usage::

    python benchmarks/continual.py --quick --json /tmp/continual.json
    python benchmarks/continual.py --players 20000 --json continual.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

logger = logging.getLogger("benchmarks.continual")

DRIFT = {
    "new_platform": "web",
    "price_multiplier": 2.0,
    "null_rate": {"event_type": 0.4},
    # Guild reminders reach the lapsing players: social activity now peaks among the least
    # engaged, where it rose with engagement (the relation the first champion learned).
    "social_by_level": (0.3, 4.0, 3.0, 2.0, 1.0, 0.3),
}
FIRST_CUTOFF = dt.date(2026, 1, 1)
MONTH_DAYS = 30


def generate_months(root: str, months: int, players: int, drift_month: int, seed: int = 100):
    """One :class:`~raypipe.tracking.continual.Period` per month (``m1`` ... ``mN``); from
    ``drift_month`` (1-based) on, every day of the month's history carries :data:`DRIFT`."""
    import polars as pl

    from raypipe.engine.inline import InlineBackend
    from raypipe.features.generated import generated_training_set
    from raypipe.synth.config import DriftConfig, TelemetryConfig
    from raypipe.synth.generate import run_generate
    from raypipe.tracking.continual import Period

    periods = []
    for index in range(months):
        cutoff = FIRST_CUTOFF + dt.timedelta(days=MONTH_DAYS * index)
        drift = DriftConfig(start_day=0, **DRIFT) if index + 1 >= drift_month else DriftConfig()
        config = TelemetryConfig(
            players=players, days=MONTH_DAYS, seed=seed + index, cutoff=cutoff, drift=drift
        )
        base = f"{root}/m{index + 1}"
        run_generate(config, base, InlineBackend())
        frame = generated_training_set(base, InlineBackend())
        table = frame.drop(["cutoff"]).with_columns(pl.col("churned").cast(pl.Int64)).to_arrow()
        start = dt.datetime.combine(cutoff, dt.time(), tzinfo=dt.timezone.utc)
        periods.append(Period(f"m{index + 1}", start, table))
    return periods


def holdout_auc(table: pa.Table, scores: np.ndarray | None = None) -> float:
    """AUC of ``scores`` (default: the exact churn probability) on ``table``'s labels."""
    from sklearn.metrics import roc_auc_score

    y = table.column("churned").to_numpy()
    p = table.column("churn_probability").to_numpy() if scores is None else scores
    return float(roc_auc_score(y, p))


def run(
    months: int, players: int, drift_month: int, root: str, warm_start: bool = False
) -> dict[str, Any]:
    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.continual import HOLDOUT_FRACTION, WatchLoop, holdout_mask
    from raypipe.tracking.lifecycle import Lifecycle
    from raypipe.tracking.policy import policy_from_mapping
    from raypipe.tracking.registry import Registry
    from raypipe.tracking.retrain import XGBoostRetrainer
    from raypipe.tracking.store import audit_path, resolve_tracking_uri

    started = time.perf_counter()
    periods = generate_months(f"{root}/data", months, players, drift_month)
    generated_s = time.perf_counter() - started
    registry = Registry(resolve_tracking_uri(None, root), AuditLog(audit_path(root)))
    policy = policy_from_mapping(
        {
            "model": "churn",
            "roles": {"ml-lead": ["approver"]},
            "challenger": {"warm_start": warm_start},
        },
        source="benchmarks/continual.py",
    )
    lifecycle = Lifecycle(registry, policy)
    retrainer = XGBoostRetrainer(registry, "churn", f"{root}/models")
    loop = WatchLoop(lifecycle, retrainer, state_path=f"{root}/watch.json", who="watch")
    boot = loop.bootstrap(periods[:1])
    first = boot.version
    if boot.status == "waiting":
        _approve(lifecycle, registry, first)
    rows, retrains, challenges = [], [], {}
    for period in periods[1:]:
        outcome = loop.step(period)
        if outcome.retrained:
            retrains.append(period.name)
            challenges[period.name] = outcome.challenge.to_dict() if outcome.challenge else None
        if outcome.transition is not None and outcome.transition.status == "waiting":
            _approve(lifecycle, registry, outcome.challenger)
        holdout = period.table.filter(
            pa.array(holdout_mask(period.table, ("player_id",), HOLDOUT_FRACTION))
        )
        rows.append(
            {
                "month": period.name,
                "served_by": outcome.champion,
                "auc_watch": holdout_auc(holdout, retrainer.score(outcome.champion, holdout)),
                "auc_no_trigger": holdout_auc(holdout, retrainer.score(first, holdout)),
                "auc_bayes": holdout_auc(holdout),
                "triggers": [f.trigger for f in outcome.firings],
                "action": "retrain"
                if outcome.retrained
                else ("cool-down" if outcome.cooling_down else "-"),
            }
        )
    after = [r for r in rows if r["served_by"] != first]
    return {
        "months": months,
        "players": players,
        "drift_month": drift_month,
        "rows": rows,
        "retrains": retrains,
        "warm_start": warm_start,
        "challenges": challenges,
        "months_drifted_model_would_serve": months - drift_month + 1,
        "months_drifted_model_served_with_watch": sum(
            1 for r in rows if r["served_by"] == first and int(r["month"][1:]) >= drift_month
        ),
        "auc_recovered_mean": float(np.mean([r["auc_watch"] - r["auc_no_trigger"] for r in after]))
        if after
        else None,
        "gap_to_bayes_watch": float(np.mean([r["auc_bayes"] - r["auc_watch"] for r in after]))
        if after
        else None,
        "gap_to_bayes_no_trigger": float(
            np.mean([r["auc_bayes"] - r["auc_no_trigger"] for r in after])
        )
        if after
        else None,
        "generate_s": generated_s,
        "total_s": time.perf_counter() - started,
    }


def _approve(lifecycle: Any, registry: Any, version: str | None) -> str:
    assert version is not None
    lifecycle.approve(version, "production", who="approver", reason="benchmark approves at once")
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1500 players a month")
    parser.add_argument("--players", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--drift-month", type=int, default=4)
    parser.add_argument("--warm-start", action="store_true", help="challenge with warm start")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    players = 1500 if args.quick else args.players
    with tempfile.TemporaryDirectory() as root:
        result = run(args.months, players, args.drift_month, root, args.warm_start)
    header = f"{'month':>5} {'served by':>9} {'watch':>7} {'no trigger':>10} {'Bayes':>7}  action"
    print(header)
    for r in result["rows"]:
        print(
            f"{r['month']:>5} {r['served_by']:>9} {r['auc_watch']:7.4f} "
            f"{r['auc_no_trigger']:10.4f} {r['auc_bayes']:7.4f}  {r['action']} "
            f"{','.join(r['triggers'])}"
        )
    print(
        f"retrains: {result['retrains']}; without the trigger the drifted model serves "
        f"{result['months_drifted_model_would_serve']} months, with it "
        f"{result['months_drifted_model_served_with_watch']}; AUC recovered "
        f"{_fmt(result['auc_recovered_mean'])}; gap to Bayes {_fmt(result['gap_to_bayes_watch'])}"
        f" (watch) vs {_fmt(result['gap_to_bayes_no_trigger'])} (no trigger)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


if __name__ == "__main__":
    main()
