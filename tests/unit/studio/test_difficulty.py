"""The difficulty simulator's truth, the policies and the ``difficulty.simulate`` stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from raypipe.difficulty import FailRateController, FixedSetting, Oracle
from raypipe.difficulty.stage import DifficultyOptions, DifficultyStage, mean_interval
from raypipe.engine.inline import InlineBackend
from raypipe.errors import SpecError
from raypipe.io.dataset import read_dataset
from raypipe.stages.base import StageContext
from raypipe.stages.registry import load_stage
from raypipe.synth.difficulty import (
    OPTIMAL_FAIL_RATE,
    DifficultyConfig,
    World,
    fail_probability,
    simulate,
    world,
)

CONFIG = DifficultyConfig(players=4_000, days=30, seed=1)


def test_fail_probability_rises_with_difficulty_and_falls_with_skill() -> None:
    truth = World(skill=np.array([-1.0, 0.0, 1.0]), difficulty=np.array([0.0, 1.0]))
    level = np.zeros(3, dtype=np.int64)
    p = fail_probability(truth, level, np.full(3, 2))
    assert np.all(np.diff(p) < 0)
    assert p[1] == pytest.approx(0.5)
    harder = fail_probability(truth, level + 1, np.full(3, 2))
    assert np.all(harder > p)


def test_same_seed_same_outcome_and_policies_share_players() -> None:
    first = simulate(CONFIG, FixedSetting(2))
    again = simulate(CONFIG, FixedSetting(2))
    assert np.array_equal(first.retained, again.retained)
    assert np.array_equal(first.spend, again.spend)
    assert np.array_equal(world(CONFIG).skill, world(CONFIG).skill)


def test_frustration_and_boredom_both_cost_players() -> None:
    retention = {s: simulate(CONFIG, FixedSetting(s)).retained.mean() for s in range(5)}
    # a middle setting keeps more players than the hardest (frustration) ...
    assert retention[4] < retention[1]
    # ... and the oracle's optimal fail rate beats aiming lower or higher
    at = {f: simulate(CONFIG, Oracle(f)).retained.mean() for f in (0.05, OPTIMAL_FAIL_RATE, 0.45)}
    assert at[OPTIMAL_FAIL_RATE] > max(at[0.05], at[0.45])


def test_controller_steps_toward_the_target() -> None:
    controller = FailRateController(target=0.3, band=0.1)
    observed = np.array([0.6, 0.3, 0.05, 0.6])
    current = np.array([2, 2, 2, 0])
    truth = World(np.zeros(4), np.zeros(1))
    chosen = controller(0, observed, current, truth, np.zeros(4, dtype=np.int64))
    assert chosen.tolist() == [1, 2, 3, 0]


def test_mean_interval() -> None:
    result = mean_interval(np.array([1.0, 2.0, 3.0]))
    assert result["mean"] == 2.0
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert result["ci95"] == pytest.approx([2.0 - half, 2.0 + half])


def test_stage_compares_policies_over_seeds(tmp_path: Path) -> None:
    context = StageContext("simulate", str(tmp_path), "r", InlineBackend())
    options = DifficultyOptions(players=3_000, seeds=3, shard_players=1_500)
    result = DifficultyStage().run(context, {}, options)
    fixed = {
        n: result.metrics["policies"][n]["retention"]["mean"]
        for n in options.policies
        if n.startswith("fixed_")
    }
    assert result.metrics["baseline"] == max(fixed, key=fixed.__getitem__)
    assert context.executor.calls == ["difficulty.simulate"]
    outcomes = read_dataset(context.output_url("outcomes"))
    assert outcomes.num_rows == 3_000 * 3 * len(options.policies)
    assert read_dataset(context.output_url("levels")).num_rows == options.levels
    quality = result.metrics["quality"]
    assert quality["metric"] == "retention_d30"
    assert quality["baseline"] < quality["value"] < quality["truth"]
    low, high = result.metrics["controller_minus_baseline_retention"]["ci95"]
    assert 0 < low < high
    retention = result.metrics["policies"]["controller"]["retention"]
    assert retention["ci95"][0] < retention["mean"] < retention["ci95"][1]
    # per-seed means in the record equal the outcome table's
    frame = outcomes.to_pandas()
    by_seed = frame[frame.policy == "oracle"].groupby("seed").retained.mean()
    assert result.metrics["policies"]["oracle"]["retention"]["mean"] == pytest.approx(
        by_seed.mean()
    )


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown policies"):
        DifficultyOptions(policies=["controller", "oracle", "fixed_impossible"])
    with pytest.raises(ValidationError, match="must include"):
        DifficultyOptions(policies=["fixed_easy", "oracle"])
    context = StageContext("simulate", str(tmp_path), "r", InlineBackend())
    with pytest.raises(SpecError, match="baseline"):
        DifficultyStage().run(context, {}, DifficultyOptions(players=10, baseline="fixed_hard"))
    with pytest.raises(SpecError, match="baseline"):
        DifficultyStage().run(
            context, {}, DifficultyOptions(players=10, policies=["controller", "oracle"])
        )


def test_kind_is_registered() -> None:
    assert load_stage("difficulty.simulate") is DifficultyStage
