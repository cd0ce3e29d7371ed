"""``benchmarks/run_all.py`` renders the README's figures from the benchmarks' JSON.

The benchmarks themselves are not run: sample JSON in the shape each one writes stands in.
"""

# ruff: noqa: RUF001 - the table uses the multiplication sign

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_ALL = Path(__file__).resolve().parents[3] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


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
        "scaling": [{"rows": 1_000_000, "columns": 100, "drifted_columns": ["c"] * 40}],
    },
    "inference": {
        "rows": 4_000_000,
        "single_s": 14.5,
        "raydata_s": 28.0,
        "raypipe_s": 12.8,
        "raypipe_peak_mib": 1474.0,
    },
    "federated": {
        "raypipe_s": 12.0,
        "flower_s": 59.7,
        "flower_error": None,
        "auc_federated": 0.8851,
        "auc_centralized": 0.8851,
        "raypipe_rounds_per_s": 16.1,
        "numpy_rounds_per_s": 9.4,
    },
    "federated_1000": {
        "raypipe_s": 10.3,
        "flower_s": None,
        "flower_error": "timed out after 900 s",
        "auc_federated": 0.8851,
        "auc_centralized": 0.8851,
        "raypipe_rounds_per_s": 12.7,
        "numpy_rounds_per_s": 11.3,
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
    assert "at full sizes, one after another (80 min in all)" in table
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
    assert inference.endswith("| yes; yes; yes |")
    assert "Flower 59.7 s (4.98×)" in rows["federated.py"]
    lead = rows["federated.py --clients 1000 --partitions iid --timeout 900"]
    assert "Flower did not finish (timed out after 900 s)" in lead
    assert "= 0.37× the time, -0.0006 AUC" in rows["hpo.py --seeds 3"]
    # A target missed is shown, not hidden: seed 8's ratio is 0.96 < 0.97.
    churn = rows["churn_observability.py"]
    assert "(mean 0.975)" in churn and churn.endswith("| **no** |")


def test_a_failed_or_changed_benchmark_says_so(run_all, tmp_path: Path) -> None:
    write_sitting(tmp_path, quick=False, skip="drift")
    (tmp_path / "hpo.json").write_text(json.dumps({"optuna_s": 1.0}))
    by_name = {b.name: b for b in run_all.BENCHMARKS}
    drift = run_all.load_outcome(by_name["drift"], tmp_path, returncode=1)
    hpo = run_all.load_outcome(by_name["hpo"], tmp_path)
    assert "failed (exit 1), no JSON; see `drift.log`" in run_all.render_row(drift)
    changed = run_all.render_row(hpo)
    assert "JSON without the expected figures (KeyError: 'wall_ratio')" in changed
    assert "update `summarize_hpo` in run_all.py" in changed


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
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "print('figures', args)\n"
        "if '--quick' in args:\n"
        "    json.dump({'quick': True}, open(args[args.index('--json') + 1], 'w'))\n"
        "sys.exit(0 if '--quick' in args else 3)\n"
    )
    monkeypatch.setattr(run_all, "HERE", scripts)
    fake = run_all.Benchmark("fake", "fake.py", lambda data: None, ("--size", "9"))
    out = tmp_path / "out"
    out.mkdir()

    quick = run_all.run_benchmark(fake, out, quick=True)
    assert quick.data == {"quick": True} and quick.returncode == 0
    assert "'--quick', '--json'" in (out / "fake.log").read_text()

    full = run_all.run_benchmark(fake, out, quick=False)  # exits 3 and writes no JSON
    assert full.returncode == 3 and full.data is None
    assert "'--size', '9', '--json'" in (out / "fake.log").read_text()
