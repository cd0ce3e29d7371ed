"""The search on Ray: long-lived trial actors, results back to the driver, failures recorded."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.training.search import SearchSpec, run_search
from raypipe.training.spaces import ParamSpec, SpaceSpec, resolve_spaces
from raypipe.training.trial import TrialData, TrialRequest


def _data() -> TrialData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] ** 2 + rng.normal(size=2000) > 0).astype(np.float32)
    return TrialData(
        task="binary",
        x={"native": {"fit": x[:1500], "valid": x[1500:]}},
        y={"fit": y[:1500], "valid": y[1500:]},
        feature_names=("a", "b", "c", "d"),
        feature_types={"native": ("q",) * 4},
    )


@pytest.mark.ray
def test_actor_pool_runs_a_multi_fidelity_search(ray_executor: object) -> None:
    from raypipe.engine.search import ActorPoolRunner

    runner = ray_executor.trial_runner(_data(), actors=2)  # type: ignore[attr-defined]
    assert isinstance(runner, ActorPoolRunner) and runner.slots == 2
    try:
        runner.wait_ready()
        space = resolve_spaces(["xgboost"])["xgboost"]
        spec = SearchSpec(
            candidate="xgboost", space=space, n_trials=9, seed=1, max_rounds=40, row_fraction=0.5
        )
        result = run_search(spec, runner, maximize=True)
        assert len([t for t in result.trials if t.rung == 0]) == 9
        assert any(t.rung == 1 for t in result.trials)
        assert result.best is not None and result.best.rung == 1 and result.best.score > 0.75
        # A bad configuration comes back as a failed result; the pool keeps working.
        bad = SpaceSpec(params={"max_depth": ParamSpec(type="int", low=-3, high=-1)})
        failed = run_search(
            SearchSpec(candidate="xgboost", space=bad, n_trials=3), runner, maximize=True
        )
        assert len(failed.failures) == 3 and failed.best is None
        runner.submit(
            TrialRequest(
                trial_id=99,
                candidate="xgboost",
                params={"max_depth": 2},
                max_rounds=5,
                return_model=True,
            )
        )
        final = runner.next_result()
        assert final.ok and final.model and final.model_format == "xgboost-ubj"
        # An actor that dies mid-trial (OOM, node loss) fails that trial; a new actor takes over.
        import ray

        runner.submit(
            TrialRequest(
                trial_id=7,
                candidate="xgboost",
                params={},
                max_rounds=3000,
                early_stopping_rounds=3000,
            )
        )
        ray.kill(runner._actors[runner._inflight[next(iter(runner._inflight))][0]])
        lost = runner.next_result()
        assert not lost.ok and lost.trial_id == 7 and runner.replaced == 1
        for trial_id in (8, 9):
            runner.submit(
                TrialRequest(trial_id=trial_id, candidate="xgboost", params={}, max_rounds=5)
            )
        assert all(runner.next_result().ok for _ in range(2))
    finally:
        runner.close()
    # No task ran: the stage's nodes are those of its trial actors, gathered as the pool ended.
    driver_node = ray_executor._runtime.driver_node_id  # type: ignore[attr-defined]
    assert ray_executor.node_ids == {driver_node}  # type: ignore[attr-defined]


@pytest.mark.ray
def test_train_search_stage_on_ray(ray_executor: object, tmp_path: object) -> None:
    from pathlib import Path

    from raypipe.io.dataset import write_dataset
    from raypipe.stages.base import DatasetInput, StageContext
    from raypipe.tracking.models import load_model
    from raypipe.training.stage import TrainSearchOptions, TrainSearchStage
    from tests.unit.training.data import churn_table

    root = Path(str(tmp_path))
    table, truth = churn_table(4000)
    data = DatasetInput(str(root / "data"), write_dataset(str(root / "data"), table))
    truth_in = DatasetInput(str(root / "truth"), write_dataset(str(root / "truth"), truth))
    context = StageContext(
        stage_name="train", data_dir=str(root), run_id="r1", backend=ray_executor
    )  # type: ignore[arg-type]
    options = TrainSearchOptions(
        model_name="churn",
        trials={"xgboost": 8, "logistic": 2, "random_forest": 1, "hist_gb": 1},
        max_rounds=100,
    )
    metrics = TrainSearchStage().run(context, {"data": data, "truth": truth_in}, options).metrics
    assert metrics["trials"] == 12 and metrics["failed_trials"] == 0
    assert metrics["test_auc"] >= 0.97 * metrics["bayes_auc"]
    assert metrics["promoted"] is True
    loaded = load_model("models:/churn@champion", tracking_uri=metrics["tracking_uri"])
    assert loaded.sha256 == metrics["model_sha256"]
