"""``benchmarks/run_all.py`` renders the README's figures from the benchmarks' JSON.

The benchmarks themselves are not run: sample JSON in the shape each one writes stands in.
"""

# ruff: noqa: RUF001 - the table uses the multiplication sign

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

RUN_ALL = Path(__file__).resolve().parents[3] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("benchmarks_run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    # run_all imports its neighbour `summaries` as the script does (its folder first on the path).
    sys.path.insert(0, str(RUN_ALL.parent))
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(RUN_ALL.parent))


def variant(
    rounds_per_s: float, auc: float, *, bytes_: float = 336, epsilon: float | None = None
) -> dict[str, float | None]:
    """One variant's result under ``partitions.<split>`` of federated.py's JSON."""
    return {
        "auc": auc,
        "wall_s": 12.0,
        "rounds_s": 20 / rounds_per_s,
        "steady_rounds_per_s": rounds_per_s,
        "bytes_per_client_round": bytes_,
        "epsilon": epsilon,
    }


def sweep(rps: float, p99_ms: float) -> dict[str, object]:
    """serving.py's sweep of one URL: its points at 1, 8 and 64 connections and the best."""
    points = {"1": {"rps": rps / 4, "p99_ms": p99_ms / 8}, "8": {"rps": rps, "p99_ms": p99_ms}}
    return {"points": points, "max_rps": rps, "p99_ms_at_max": p99_ms}


def continual(*, warm_start: bool, retrains: list[str], recovered: float | None) -> dict:
    fresh = {"challenger": 0.8720, "champion": 0.8573}
    return {
        "months": 6,
        "players": 5000,
        "drift_month": 4,
        "warm_start": warm_start,
        "rows": [],
        "retrains": retrains,
        "challenges": {
            m: {"passed": True, "metric": "roc_auc", "fresh": fresh, "replay": {}, "reasons": []}
            for m in retrains
        },
        "months_drifted_model_would_serve": 3,
        "months_drifted_model_served_with_watch": 1 if recovered is not None else 3,
        "auc_recovered_mean": recovered,
        "gap_to_bayes_watch": 0.0161 if recovered is not None else None,
        "gap_to_bayes_no_trigger": 0.0335 if recovered is not None else None,
        "generate_s": 20.0,
        "total_s": 65.2,
    }


def reads(sqlite_one: float, sqlite_hundred: float, redis_one: float, redis_hundred: float):
    """feature_store.py's per-system figures: materialization and read percentiles per store."""
    return {
        store: {
            "materialize_s": 1.0,
            "materialize_rows_per_s": 500_000,
            "one": {"p50_ms": one / 2, "p99_ms": one},
            "hundred": {"p50_ms": hundred / 2, "p99_ms": hundred},
        }
        for store, one, hundred in (
            ("sqlite", sqlite_one, sqlite_hundred),
            ("redis", redis_one, redis_hundred),
        )
    }


def studio_row(application: str, metric: str, value: float, truth: float, baseline: float):
    quality = {"metric": metric, "value": value, "truth": truth, "baseline": baseline}
    return {
        "application": application,
        "job": "jobs/x.yaml",
        "players": "job default",
        "seconds": 63.0,
        "quality": quality,
        "figures": {},
    }


SAMPLES = {
    "synth": {
        "benchmark": "synth_generation",
        "rows": [
            {
                "players": 50_000,
                "shards": 5,
                "mode": "single",
                "events": 11_000_000,
                "seconds": 3.0,
                "events_per_s": 3_666_667,
                "speedup_vs_single": 1.0,
            },
            {
                "players": 200_000,
                "shards": 20,
                "mode": "single",
                "events": 45_900_000,
                "seconds": 12.3,
                "events_per_s": 3_730_000,
                "speedup_vs_single": 1.0,
            },
            {
                "players": 200_000,
                "shards": 20,
                "mode": "ray_tasks",
                "events": 45_900_000,
                "seconds": 6.6,
                "events_per_s": 6_930_000,
                "speedup_vs_single": 1.86,
            },
        ],
    },
    "features": [
        {"rows": 3_000_000, "polars_s": 0.30, "raypipe_s": 0.42, "equal": True},
        {"rows": 30_000_000, "polars_s": 2.90, "raypipe_s": 3.07, "equal": True},
    ],
    "drift": {
        "raypipe_s": 42.5,
        "scipy_s": 64.6,
        "same": True,
        "scaling": [{"rows": 1_000_000, "columns": 100, "drifted_columns": 40}],
    },
    "inference": {
        "rows": 4_000_000,
        "single_s": 14.5,
        "raydata_s": 28.0,
        "raypipe_s": 12.8,
        "job_s": 13.9,
        "raypipe_peak_mib": 1474.0,
        "startup_s": {"single": 0.6, "cli": 1.4, "cli_ray": 4.9},
        "quick": False,
        "detail": {
            f"{scale}_{variant}": {"s": seconds, "peak_mib": 1400.0, "rows_per_s": 1.0}
            for scale, variant, seconds in (
                ("1x", "single", 14.5),
                ("1x", "raydata", 28.0),
                ("1x", "cli", 12.8),
                ("1x", "job", 13.9),
                ("4x", "single", 58.0),
                ("4x", "raydata", 98.0),
                ("4x", "cli", 50.0),
                ("4x", "job", 62.0),
            )
        },
    },
    "federated": {
        "clients": 100,
        "raypipe_s": 12.0,
        "flower_s": 59.7,
        "flower_error": None,
        "auc_federated": 0.8851,
        "auc_centralized": 0.8851,
        "raypipe_rounds_per_s": 16.1,
        "numpy_rounds_per_s": 9.4,
        "plain_round_s": 1 / 16.1,
        "secagg_round_s": 1 / 6.4,
        "he_round_s": 1 / 2.0,
        "flower_round_s": 1 / 0.44,
        "auc_secagg": 0.8851,
        "auc_he": 0.8849,
        "partitions": {
            "iid": {
                "central_auc": 0.8851,
                "numpy": variant(9.4, 0.8851),
                "raypipe": variant(16.1, 0.8851, bytes_=336),
                "raypipe+dp": variant(15.0, 0.8420, bytes_=336, epsilon=3.21),
                "raypipe+secagg": variant(6.4, 0.8851, bytes_=9_120),
                "raypipe+he": variant(2.0, 0.8849, bytes_=131_400),
                "raypipe+dp+secagg": variant(6.1, 0.8411, bytes_=9_120, epsilon=3.21),
                "flower": variant(0.44, 0.8851),
            }
        },
    },
    "federated_1000": {
        "clients": 1000,
        "raypipe_s": 10.3,
        "flower_s": None,
        "flower_error": "timed out after 900 s",
        "auc_federated": 0.8851,
        "auc_centralized": 0.8851,
        "raypipe_rounds_per_s": 12.7,
        "numpy_rounds_per_s": 11.3,
        "plain_round_s": 1 / 12.7,
        "secagg_round_s": 1 / 1.9,
        "he_round_s": None,
        "flower_round_s": None,
        "auc_secagg": 0.8851,
        "auc_he": None,
        "partitions": {
            "iid": {
                "central_auc": 0.8851,
                "numpy": variant(11.3, 0.8851),
                "raypipe": variant(12.7, 0.8851, bytes_=336),
                "raypipe+secagg": variant(1.9, 0.8851, bytes_=9_120),
                "raypipe+he": {"error": "timed out after 900 s", "wall_s": 900.4},
                "flower": {"error": "timed out after 900 s", "wall_s": 900.5},
            }
        },
    },
    "hpo": {
        "optuna_s": 340.9,
        "optuna_best_auc": 0.8254,
        "raypipe_s": 126.4,
        "raypipe_best_auc": 0.8248,
        "wall_ratio": 126.4 / 340.9,
        "bayes_auc": 0.8306,
    },
    "observability": {
        "results": [
            {"seed": 7, "players": 20_000, "test_auc": 0.9, "bayes_auc": 0.9, "ratio": 0.99},
            {"seed": 8, "players": 20_000, "test_auc": 0.9, "bayes_auc": 0.95, "ratio": 0.96},
        ]
    },
    "feature_store": {
        "rows": 500_000,
        "entities": 100_000,
        "features": 50,
        "reads": 2000,
        "raypipe_p99_ms_sqlite": 0.21,
        "feast_p99_ms_sqlite": 1.90,
        "raypipe_p99_ms_redis": 0.35,
        "feast_p99_ms_redis": 0.90,
        "raypipe_materialize_rows_per_s": 1_250_000,
        "feast_materialize_rows_per_s": 25_000,
        "stream_events_per_s": 1_400_000,
        "equal": True,
        "raypipe": reads(0.21, 1.2, 0.35, 0.8),
        "feast": reads(1.90, 9.0, 0.90, 6.5),
        "stream": {
            "events": 5_000_000,
            "events_per_s": 1_400_000,
            "events_per_cpu_s": 1_100_000,
            "late": 1_234,
            "open_windows_max_first_half": 60_000,
            "open_windows_max_second_half": 61_000,
            "state_bytes_max_first_half": 8 * 2**20,
            "state_bytes_max_second_half": 8.4 * 2**20,
            "closed_windows": 9_000_000,
        },
    },
    "serving": {
        "seconds_per_point": 6.0,
        "entities": 100_000,
        "raypipe": {
            "direct": sweep(145, 756),
            "lookup": sweep(120, 800),
            "replica_port": {"direct": sweep(494, 527), "lookup": sweep(176, 600)},
        },
        "serve": {"direct": sweep(105, 161), "lookup": sweep(96, 170)},
        "uvicorn": {"direct": sweep(313, 72), "lookup": sweep(262, 80)},
        "raypipe_max_rps": 145.0,
        "raypipe_p99_ms": 756.0,
        "raypipe_lookup_max_rps": 120.0,
        "serve_max_rps": 105.0,
        "serve_p99_ms": 161.0,
        "serve_lookup_max_rps": 96.0,
        "uvicorn_max_rps": 313.0,
        "uvicorn_p99_ms": 72.0,
        "uvicorn_lookup_max_rps": 262.0,
        "p99_ms_at_200rps": 281.0,
        "rps_at_200rps": 198.0,
        "router_overhead": 0.05,
        "router_rps_ratios": [0.95, 0.97, 0.93],
        "swap": {
            "failed": 0,
            "ok": 916,
            "new_version_answered": True,
            "promotion_to_answer_s": 4.5,
            "p99_ms": 300.0,
        },
        "failed_during_swap": 0,
        "raypipe_without_flags_max_rps": 149.0,
        "raypipe_replica_port_max_rps": 494.0,
        "raypipe_replica_port_p99_ms": 527.0,
        "raypipe_replica_port_lookup_max_rps": 176.0,
        "raypipe_vs_serve": 1.38,
        "raypipe_replica_port_vs_serve": 4.70,
        # At Serve's p99 (161 ms) raypipe's proxy reaches only its 1-connection point.
        "raypipe_rps_at_serve_p99": 36.25,
        "raypipe_vs_serve_at_equal_p99": 0.35,
        "raypipe_replica_port_rps_at_serve_p99": 277.0,
        "raypipe_replica_port_vs_serve_at_equal_p99": 2.64,
        "model_sha256": "0123456789abcdef",
    },
    "continual": continual(warm_start=False, retrains=["m4"], recovered=0.0174),
    "continual_warm_start": continual(warm_start=True, retrains=["m4", "m6"], recovered=None),
    "studio": {
        "benchmark": "studio_models",
        "quick": False,
        "rows": [
            studio_row("spend (LTV)", "normalized_gini", 0.445, 0.644, 0.167),
            studio_row("recommendations", "ndcg@10", 0.196, 0.244, 0.129),
            studio_row("build QA", "f1", 1.0, 1.0, 0.074),
            studio_row("difficulty", "retention_d30", 0.329, 0.384, 0.311),
        ],
    },
    "studio_10m": {
        "benchmark": "studio_models",
        "quick": False,
        "mode": "generate-only",
        "rows": [
            {
                "application": "spend (LTV)",
                "players": 10_000_000,
                "process_seconds": 35.0,
                "peak_mib": 1147,
                "rows": {"players": 10_000_000, "spend_truth": 10_000_000},
            },
            {
                "application": "recommendations",
                "players": 10_000_000,
                "process_seconds": 427.1,
                "peak_mib": 1292,
                "rows": {"interactions": 285_676_428, "items": 300},
            },
        ],
    },
}


def write_sitting(out: Path, *, quick: bool, skip: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in SAMPLES.items():
        if name != skip:
            (out / f"{name}.json").write_text(json.dumps(data))
    names = list(SAMPLES)
    sitting = {
        "machine": "Test CPU, 2 logical cores, 8 GiB; Python 3.11.7, Ray 2.60.0",
        "date": "2026-12-06",
        "quick": quick,
        "seconds": {name: 600.0 for name in names},
        "returncodes": {name: (1 if name == skip else 0) for name in names},
    }
    (out / "sitting.json").write_text(json.dumps(sitting))


def rows_by_script(table: str) -> dict[str, str]:
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {row.split("`")[1]: row for row in rows}


def test_every_benchmark_renders_its_figures_and_checks(run_all, tmp_path: Path) -> None:
    write_sitting(tmp_path, quick=False)
    outcomes = [run_all.load_outcome(b, tmp_path, seconds=600.0) for b in run_all.BENCHMARKS]
    table = run_all.render_figures(outcomes, machine="Test CPU", date="2026-12-06")
    assert "**Machine:** Test CPU. All figures below come from one sitting on 2026-12-06" in table
    assert "at full sizes, one after another (140 min in all)" in table
    rows = rows_by_script(table)
    assert len(rows) == len(run_all.BENCHMARKS) == len(SAMPLES)
    assert "ray_tasks 6.93M/s (1.86×)" in rows["synth_generation.py"]
    assert "200,000 players, 45.9M events" in rows["synth_generation.py"]
    features = rows["feature_generation.py"]
    assert "30M events: polars 2.90 s, raypipe 3.07 s (1.06×)" in features
    assert "10× the rows in 7.31× the time" in features and features.endswith("| yes; yes; yes |")
    assert "(1.52× faster), 40 drifted" in rows["drift.py"]
    inference = rows["batch_inference.py --rounds 2"]
    assert "= 1.13× single, 2.19× Ray Data; peak 1,474 MiB" in inference
    assert "; job 1.04× single; `raypipe infer` start-up 1.40 s (in process" in inference
    # At 16M rows the slower variant (the job, 62 s) sets both ratios: 58 / 62 and 98 / 62.
    assert "16M rows: cli 1.16×, job 0.94× single, 1.58× Ray Data" in inference
    assert inference.endswith("| yes; yes; yes; yes; yes; yes; **no** |")
    federated = rows["federated.py"]
    assert "Flower 59.7 s (4.98×)" in federated
    # Issue 20's variants: secagg's 1/6.4 s a round is 2.52 times plain's 1/16.1 s; DP shows its ε.
    assert "secagg 0.156 s/round (2.52×), 9,120 B/client/round, AUC 0.8851" in federated
    assert "dp 0.067 s/round (1.07×), 336 B/client/round, AUC 0.8420, ε 3.21" in federated
    assert federated.endswith("| yes; yes; yes; yes; yes; yes |")
    lead = rows["federated.py --clients 1000 --partitions iid --timeout 300"]
    # A timed-out Flower bounds the lead from below (900.5 s / 10.3 s); the round-time target
    # is stated at 100 clients only; a failed variant leaves its AUC unknown, not met.
    assert "Flower did not finish (timed out after 900 s; lead > 87.43×)" in lead
    assert "he failed" in lead and "secagg ≤ 3×" not in lead
    assert lead.endswith("| yes; yes; yes; ?; ? |")
    assert "= 0.37× the time, -0.0006 AUC" in rows["hpo.py --seeds 3"]
    # A target missed is shown, not hidden: seed 8's ratio is 0.96 < 0.97.
    churn = rows["churn_observability.py"]
    assert "(mean 0.975)" in churn and churn.endswith("| **no** |")
    store = rows["feature_store.py"]
    assert "sqlite raypipe 0.210 ms vs Feast 1.900 ms (0.11× Feast's)" in store
    assert "materialize (rows) raypipe 1.25M/s vs Feast 25k/s (50.00×)" in store
    assert "1,234 late, state 8.0 MiB → 8.4 MiB" in store and "values equal" in store
    # Redis: 0.35 ms is over a third of Feast's 0.90 ms, though under 1 ms.
    assert store.endswith("| yes; **no**; yes; yes; yes; yes; yes |")
    serving = rows["serving.py --seconds 6"]
    # Judged on the proxy (36.25 rps within Serve's p99: 0.35 of Serve), not the replica ports.
    assert "at Serve's p99: raypipe 36 rps = 0.35× Serve" in serving
    assert "replica ports 494 rps (527 ms; 2.64× at Serve's p99, not Serve's path)" in serving
    assert "198 rps served, p99 281.0 ms" in serving and "0 failed of 916" in serving
    assert serving.endswith("| **no**; **no**; yes; yes |")
    scratch = rows["continual.py --players 5000"]
    assert "retrains in m4; challenger fresh AUC 0.8720 vs champion 0.8573, passed" in scratch
    assert "serves 3 months, with it 1; AUC recovered +0.0174" in scratch
    assert scratch.endswith("| yes; yes; yes |")
    warm = rows["continual.py --players 5000 --warm-start"]
    assert "warm start: retrains in m4, m6" in warm and warm.endswith("| **no**; **no**; ? |")
    studio = rows["studio_models.py"]
    assert "spend (LTV) normalized_gini 0.445 (truth 0.644, baseline 0.167), 63 s" in studio
    assert studio.endswith("| yes; yes; yes; yes; yes |")
    generated = rows[
        "studio_models.py --generate-only --players 10000000 --set stages.simulate.with.seeds=2"
    ]
    assert "10,000,000 players, each generator in its own `raypipe run`" in generated
    assert "spend (LTV) 20.0M rows in 35 s, peak 1,147 MiB" in generated
    assert "recommendations 285.7M rows in 427 s" in generated
    assert generated.endswith("| yes |")


def test_a_failed_or_changed_benchmark_says_so(run_all, tmp_path: Path) -> None:
    write_sitting(tmp_path, quick=False, skip="drift")
    (tmp_path / "hpo.json").write_text(json.dumps({"optuna_s": 1.0}))
    by_name = {b.name: b for b in run_all.BENCHMARKS}
    drift = run_all.load_outcome(by_name["drift"], tmp_path, returncode=1)
    hpo = run_all.load_outcome(by_name["hpo"], tmp_path)
    assert "failed (exit 1), no JSON; see `drift.log`" in run_all.render_row(drift)
    changed = run_all.render_row(hpo)
    assert "JSON without the expected figures (KeyError: 'wall_ratio')" in changed
    assert "update `summarize_hpo` in summaries.py" in changed


def test_render_only_rewrites_just_the_figures_of_the_readme(
    run_all, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    original = (RUN_ALL.parent / "README.md").read_text()  # the real one has the markers
    readme.write_text(original)
    monkeypatch.setattr(run_all, "README", readme)
    write_sitting(tmp_path / "results", quick=False)

    assert run_all.main(["--render-only", "--out", str(tmp_path / "results")]) == 0

    rewritten = readme.read_text()
    before, after = original.split(run_all.BEGIN)[0], original.split(run_all.END)[1]
    assert rewritten.startswith(before) and rewritten.endswith(after)
    assert "Test CPU, 2 logical cores, 8 GiB" in rewritten
    assert "2026-11-26" not in rewritten.split(run_all.END)[0].split(run_all.BEGIN)[1]
    figures = (tmp_path / "results" / "figures.md").read_text()
    assert figures.strip() in rewritten


def test_a_quick_sitting_never_touches_the_readme(
    run_all, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{run_all.BEGIN}\nold\n{run_all.END}\n")
    monkeypatch.setattr(run_all, "README", readme)
    write_sitting(tmp_path / "results", quick=True)
    assert run_all.main(["--render-only", "--out", str(tmp_path / "results")]) == 0
    assert "old" in readme.read_text()
    assert "at smoke sizes (`--quick`)" in capsys.readouterr().out


def test_a_smoke_sitting_whose_json_lost_a_figure_fails(
    run_all, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{run_all.BEGIN}\nold\n{run_all.END}\n")
    monkeypatch.setattr(run_all, "README", readme)
    write_sitting(tmp_path / "results", quick=True)
    (tmp_path / "results" / "hpo.json").write_text(json.dumps({"optuna_s": 1.0}))
    assert run_all.main(["--render-only", "--out", str(tmp_path / "results")]) == 1


def test_an_undecidable_target_is_unknown_and_a_vacuous_one_is_not_met(run_all) -> None:
    # Flower that crashed (not timed out) has no time to compare: the lead is unknown.
    crashed = {**SAMPLES["federated"], "flower_s": None, "flower_error": "Traceback\nOSError: x\n"}
    summary = run_all.summarize_federated(crashed)
    assert "Flower did not finish (OSError: x)" in summary.figures
    lead = summary.checks[0]
    assert lead.target == "≥ 2.5× Flower" and lead.holds is None
    # Zero failures during a swap that never reached the new version prove nothing.
    stuck = {
        **SAMPLES["serving"],
        "swap": {**SAMPLES["serving"]["swap"], "new_version_answered": False},
    }
    swap = run_all.summarize_serving(stuck).checks[-1]
    assert swap.target == "0 failed across a swap" and swap.holds is False
    # With HAProxy at the URL, Serve reports no replica ports: the row says nothing of them.
    no_ports = {k: v for k, v in SAMPLES["serving"].items() if "replica_port" not in k}
    assert "replica ports" not in run_all.summarize_serving(no_ports).figures


def test_generators_at_the_jobs_own_sizes_are_not_10m(run_all) -> None:
    rows = [
        {
            "application": "spend (LTV)",
            "players": "job default",
            "process_seconds": 9.0,
            "peak_mib": 700,
            "rows": {"players": 20_000},
        }
    ]
    summary = run_all.summarize_studio_generation({"rows": rows})
    assert summary.figures.startswith("job default sizes, each generator")
    assert [check.holds for check in summary.checks] == [False]


def test_a_lower_is_better_quality_beats_its_baseline_by_being_lower(run_all) -> None:
    rows = [
        studio_row("spend (LTV)", "rmse", 5.12, 4.60, 6.71),
        studio_row("recommendations", "ndcg@10", 0.120, 0.244, 0.129),
    ]
    summary = run_all.summarize_studio({"rows": rows})
    assert [check.holds for check in summary.checks] == [True, False, True]


def test_a_readme_without_markers_is_refused(run_all) -> None:
    with pytest.raises(ValueError, match="no `<!-- figures:begin"):
        run_all.replace_figures("# Benchmarks\n", "table")


def test_the_machine_is_read_from_proc(run_all, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25165824 kB\nMemFree: 1 kB\n")
    machine = run_all.describe_machine(cpuinfo, meminfo)
    assert machine.startswith("AMD EPYC 7B13, ") and ", 24 GiB; Python 3." in machine


def test_a_benchmark_runs_to_its_json_and_a_stale_file_does_not_count(
    run_all, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "fake.py").write_text(
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "print('figures', args, 'PYTHONPATH=' + os.environ['PYTHONPATH'])\n"
        "if '--quick' in args:\n"
        "    json.dump({'quick': True}, open(args[args.index('--json') + 1], 'w'))\n"
        "sys.exit(0 if '--quick' in args else 3)\n"
    )
    monkeypatch.setattr(run_all, "HERE", scripts)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    fake = run_all.Benchmark("fake", "fake.py", lambda data: None, ("--size", "9"))
    out = tmp_path / "out"
    out.mkdir()

    quick = run_all.run_benchmark(fake, out, quick=True)
    assert quick.data == {"quick": True} and quick.returncode == 0
    log = (out / "fake.log").read_text()
    assert "'--quick', '--json'" in log
    # The checkout (here the scripts' parent) comes first on the child's path, so the
    # processes a benchmark starts import the checkout's raypipe.
    assert f"PYTHONPATH={tmp_path}{os.pathsep}/elsewhere" in log

    full = run_all.run_benchmark(fake, out, quick=False)  # exits 3 and writes no JSON
    assert full.returncode == 3 and full.data is None
    assert "'--size', '9', '--json'" in (out / "fake.log").read_text()
