"""The ``difficulty.simulate`` stage: each policy's retention and spend, with 95% intervals.

One Ray task per (seed, shard of players) plays every policy on the same players with the same
dice (common random numbers) and writes the per-player outcomes with the hidden skill; the
driver reduces them to per-seed means and a t interval over seeds. ``quality`` compares the
controller's day-``days`` retention with the oracle's (the best possible with these settings)
and the fixed baseline's; ``spend_quality`` does the same for spend per player.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from raypipe.difficulty.policy import make_policy
from raypipe.evaluation.quality import quality
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.synth.difficulty import SETTING_NAMES, DifficultyConfig, simulate, world
from raypipe.synth.sharded import shard_count

__all__ = ["DifficultyOptions", "DifficultyStage", "mean_interval"]

OUTCOMES_SCHEMA = pa.schema(
    [
        pa.field("seed", pa.int32()),
        pa.field("policy", pa.string()),
        pa.field("player_id", pa.int64()),
        pa.field("skill", pa.float64()),
        pa.field("retained", pa.bool_()),
        pa.field("active_days", pa.int32()),
        pa.field("spend", pa.float64()),
        pa.field("attempts", pa.int32()),
        pa.field("fails", pa.int32()),
    ]
)
POLICY_NAMES = ("controller", "oracle", *(f"fixed_{name}" for name in SETTING_NAMES))


class DifficultyOptions(StageOptions):
    """Options of ``difficulty.simulate``."""

    players: int = Field(default=20_000, ge=1, le=10_000_000)
    days: int = Field(default=30, ge=1, le=365)
    levels: int = Field(default=80, ge=2)
    seeds: int = Field(default=5, ge=2, le=100)
    seed: int = Field(default=0, ge=0)
    policies: list[str] = Field(
        default_factory=lambda: ["fixed_easy", "fixed_normal", "controller", "oracle"]
    )
    baseline: str = Field(
        default="best_fixed",
        description="a fixed setting among `policies`, or `best_fixed` (the best by retention)",
    )
    target_fail_rate: float = Field(default=0.3, gt=0, lt=1)
    shard_players: int = Field(default=50_000, ge=1)

    @field_validator("policies")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in POLICY_NAMES]
        if unknown:
            raise ValueError(f"unknown policies {unknown}; expected some of {list(POLICY_NAMES)}")
        if not {"controller", "oracle"} <= set(value):
            raise ValueError("`policies` must include `controller` and `oracle`")
        return value


def mean_interval(values: np.ndarray) -> dict[str, Any]:
    """Mean and two-sided 95% t interval over seeds."""
    from scipy.stats import t

    mean = float(np.mean(values))
    half = float(t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "seeds": len(values)}


def _simulate_task(
    options: DifficultyOptions, writer: Any, item: tuple[int, int]
) -> tuple[list[Any], dict[str, tuple[int, float, float]]]:
    """Every policy on one (seed, shard): staged outcomes and (players, retained, spend) sums."""
    seed, shard = item
    start = shard * options.shard_players
    players = min(options.shard_players, options.players - start)
    config = DifficultyConfig(players, options.days, options.levels, seed)
    skill = world(config, shard).skill
    tables, sums = [], {}
    for name in options.policies:
        result = simulate(config, make_policy(name, options.target_fail_rate), shard)
        sums[name] = (players, float(result.retained.sum()), float(result.spend.sum()))
        tables.append(
            pa.table(
                {
                    "seed": np.full(players, seed, dtype=np.int32),
                    "policy": pa.array([name] * players, pa.string()),
                    "player_id": np.arange(start, start + players, dtype=np.int64),
                    "skill": skill,
                    "retained": result.retained,
                    "active_days": result.active_days.astype(np.int32),
                    "spend": result.spend,
                    "attempts": result.attempts.astype(np.int32),
                    "fails": result.fails.astype(np.int32),
                },
                schema=OUTCOMES_SCHEMA,
            )
        )
    return writer.write(pa.concat_tables(tables), part=f"{seed}-{shard}"), sums


class DifficultyStage(Stage[DifficultyOptions]):
    """Simulate difficulty policies over seeds; retention and spend with confidence intervals."""

    kind = "difficulty.simulate"
    options = DifficultyOptions
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("outcomes", "levels")

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: DifficultyOptions
    ) -> StageResult:
        from raypipe.errors import SpecError
        from raypipe.io.dataset import DatasetWriter, write_dataset

        fixed = [name for name in options.policies if name.startswith("fixed_")]
        if options.baseline not in (*fixed, "best_fixed") or not fixed:
            raise SpecError(
                [
                    f"`baseline: {options.baseline}` is not a fixed setting among `policies` "
                    f"{options.policies}"
                ],
                hint="name one of the simulated fixed settings (e.g. `fixed_normal`) or "
                "`best_fixed`, and list at least one fixed setting in `policies`",
            )
        writer = DatasetWriter(
            context.output_url("outcomes"), storage_options=dict(context.storage_options)
        )
        seeds = [options.seed + offset for offset in range(options.seeds)]
        items = [
            (seed, shard)
            for seed in seeds
            for shard in range(shard_count(options.players, options.shard_players))
        ]
        results = context.executor.map(
            partial(_simulate_task, options, writer), items, name="difficulty.simulate"
        )
        manifest = writer.commit(
            [entry for entries, _ in results for entry in entries],
            schema=OUTCOMES_SCHEMA,
            metadata={"generator": "raypipe.synth.difficulty", "seeds": seeds},
        )
        # The levels' hidden difficulty (shared by every seed's players: seed `seed`'s world).
        levels = world(DifficultyConfig(1, options.days, options.levels, options.seed)).difficulty
        levels_manifest = write_dataset(
            context.output_url("levels"),
            pa.table({"level": np.arange(len(levels), dtype=np.int32), "difficulty": levels}),
            storage_options=dict(context.storage_options) or None,
        )
        per_seed: dict[str, dict[str, np.ndarray]] = {}
        for name in options.policies:
            totals = np.zeros((len(seeds), 3))
            for (seed, _), (_, sums) in zip(items, results, strict=True):
                totals[seeds.index(seed)] += sums[name]
            per_seed[name] = {
                "retention": totals[:, 1] / totals[:, 0],
                "spend_per_player": totals[:, 2] / totals[:, 0],
            }
        policies = {
            name: {metric: mean_interval(values) for metric, values in figures.items()}
            for name, figures in per_seed.items()
        }

        def figure(name: str, metric: str) -> float:
            return float(policies[name][metric]["mean"])

        baseline = options.baseline
        if baseline == "best_fixed":  # the fixed setting that kept the most players
            baseline = max(fixed, key=lambda name: figure(name, "retention"))

        metrics = {
            "players_per_seed": options.players,
            "days": options.days,
            "policies": policies,
            "baseline": baseline,
            "controller_minus_baseline_retention": mean_interval(
                per_seed["controller"]["retention"] - per_seed[baseline]["retention"]
            ),
            "quality": quality(
                f"retention_d{options.days}",
                figure("controller", "retention"),
                figure("oracle", "retention"),
                figure(baseline, "retention"),
            ),
            "spend_quality": quality(
                "spend_per_player",
                figure("controller", "spend_per_player"),
                figure("oracle", "spend_per_player"),
                figure(baseline, "spend_per_player"),
            ),
        }
        return StageResult(
            outputs={"outcomes": manifest, "levels": levels_manifest},
            metrics=metrics,
            rows_out=manifest.rows,
        )
