"""Build QA telemetry with its truth: sessions, crashes, stalls and slow frames per day, build,
device family and level, with injected regressions.

A new build ships every ``release_every_days``; each player moves to it after a geometric delay.
A session crashes, stalls (a hang of the level) or runs slow with base probabilities that depend
on the device family and the level, times a small build-to-build wobble (the noise a detector
must not flag). Injected regressions (the truth, table ``regressions``) multiply one rate on one
segment of one build: a build that crashes on one device family, a level that stalls, a device
family that renders slowly. Each shard of players aggregates its sessions to
``(day, build, device_family, level)`` counts; shards' rows of the same key add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.synth.sharded import run_sharded, shard_bounds, shard_count, shard_rng

__all__ = [
    "BuildConfig",
    "BuildTelemetryOptions",
    "BuildTelemetryStage",
    "Regression",
    "generate_build_shard",
    "injected_regressions",
    "truth_tables",
]

DEVICE_FAMILIES = (
    "adreno_6xx",
    "adreno_7xx",
    "mali_g5x",
    "mali_g7x",
    "apple_a14",
    "apple_a16",
    "pc_nvidia",
    "pc_amd",
)
DEVICE_SHARE = (0.15, 0.15, 0.12, 0.13, 0.15, 0.12, 0.1, 0.08)
CRASH_BASE = (0.004, 0.003, 0.008, 0.006, 0.002, 0.002, 0.003, 0.004)
SLOW_BASE = (0.08, 0.05, 0.12, 0.09, 0.04, 0.03, 0.03, 0.04)
STALL_BASE = 0.003
#: The kinds of injected regressions, in the order they are assigned to builds.
REGRESSION_KINDS = (
    ("crashes", "device_family", 8.0),
    ("stalls", "level", 25.0),
    ("slow_sessions", "device_family", 3.0),
)
#: The counted outcomes of a session, each a rate per session.
OUTCOMES = ("crashes", "stalls", "slow_sessions")
WORLD_STREAM, PLAYER_STREAM, SESSION_STREAM = 0, 1, 2

TELEMETRY_SCHEMA = pa.schema(
    [
        pa.field("day", pa.int32()),
        pa.field("build", pa.string()),
        pa.field("device_family", pa.string()),
        pa.field("level", pa.int32()),
        pa.field("sessions", pa.int64()),
        pa.field("crashes", pa.int64()),
        pa.field("stalls", pa.int64()),
        pa.field("slow_sessions", pa.int64()),
    ]
)
BUILDS_SCHEMA = pa.schema([pa.field("build", pa.string()), pa.field("release_day", pa.int32())])
REGRESSIONS_SCHEMA = pa.schema(
    [
        pa.field("build", pa.string()),
        pa.field("release_day", pa.int32()),
        pa.field("metric", pa.string()),
        pa.field("dimension", pa.string()),
        pa.field("value", pa.string()),
        pa.field("multiplier", pa.float64()),
    ]
)


@dataclass(frozen=True)
class BuildConfig:
    """What the build telemetry depends on."""

    players: int
    seed: int = 0
    builds: int = 8
    release_every_days: int = 4
    days_after_last: int = 12
    levels: int = 20
    sessions_per_day: float = 0.7
    regressions: int = 3
    shard_players: int = 50_000

    @property
    def shards(self) -> int:
        return shard_count(self.players, self.shard_players)

    @property
    def days(self) -> int:
        return (self.builds - 1) * self.release_every_days + self.days_after_last

    def build_name(self, index: int) -> str:
        return f"1.{index}.0"


@dataclass(frozen=True)
class Regression:
    """One injected regression: ``metric`` of build ``build`` times ``multiplier`` where
    ``dimension == value``."""

    build: int
    metric: str
    dimension: str
    value: int
    multiplier: float


def injected_regressions(config: BuildConfig) -> list[Regression]:
    """The regressions of ``config``: on distinct builds from the third on, kinds in turn."""
    rng = np.random.default_rng([config.seed, WORLD_STREAM, 1])
    candidates = np.arange(2, config.builds)
    count = min(config.regressions, len(candidates))
    builds = np.sort(rng.choice(candidates, size=count, replace=False))
    out = []
    for index, build in enumerate(builds):
        metric, dimension, multiplier = REGRESSION_KINDS[index % len(REGRESSION_KINDS)]
        size = len(DEVICE_FAMILIES) if dimension == "device_family" else config.levels
        out.append(Regression(int(build), metric, dimension, int(rng.integers(size)), multiplier))
    return out


def _rates(config: BuildConfig) -> dict[str, np.ndarray]:
    """True per-session probabilities, ``(builds, devices, levels)`` per outcome."""
    world = np.random.default_rng([config.seed, WORLD_STREAM, 0])
    shape = (config.builds, len(DEVICE_FAMILIES), config.levels)
    level_cost = 1.0 + world.random(config.levels)  # heavy levels crash and lag more
    rates = {
        "crashes": np.asarray(CRASH_BASE)[None, :, None] * (0.5 + 0.5 * level_cost)[None, None, :],
        "stalls": np.full(shape, STALL_BASE) * (0.5 + 0.5 * level_cost)[None, None, :],
        "slow_sessions": np.asarray(SLOW_BASE)[None, :, None] * level_cost[None, None, :],
    }
    for name in OUTCOMES:
        # Build-to-build wobble per device family: real but too small to be a regression.
        wobble = world.lognormal(0.0, 0.08, size=(config.builds, len(DEVICE_FAMILIES), 1))
        rates[name] = np.broadcast_to(rates[name] * wobble, shape).copy()
    for regression in injected_regressions(config):
        target = rates[regression.metric][regression.build]
        if regression.dimension == "device_family":
            target[regression.value, :] *= regression.multiplier
        else:
            target[:, regression.value] *= regression.multiplier
    return {name: np.minimum(rate, 0.9) for name, rate in rates.items()}


def generate_build_shard(config: BuildConfig, shard_index: int) -> dict[str, pa.Table]:
    """The aggregated ``telemetry`` of one shard of players."""
    start, stop = shard_bounds(config.players, config.shard_players, shard_index)
    n = stop - start
    people = shard_rng(config.seed, shard_index, PLAYER_STREAM)
    device = people.choice(len(DEVICE_FAMILIES), size=n, p=DEVICE_SHARE)
    progress = people.uniform(0, config.levels, size=n)
    speed = people.gamma(2.0, 0.15, size=n)
    releases = np.arange(config.builds) * config.release_every_days
    adopted = releases[None, :] + people.geometric(0.3, size=(n, config.builds)) - 1
    adopted[:, 0] = 0  # build 0 is live for everyone from day 0

    draws = shard_rng(config.seed, shard_index, SESSION_STREAM)
    per_day = draws.poisson(config.sessions_per_day, size=(n, config.days))
    player, day = np.nonzero(per_day)
    repeat = per_day[player, day]
    player, day = np.repeat(player, repeat), np.repeat(day, repeat)
    build = np.where(adopted[player] <= day[:, None], np.arange(config.builds), 0).max(axis=1)
    level = np.clip(
        np.floor(progress[player] + speed[player] * day + draws.normal(0, 1.0, len(day))),
        0,
        config.levels - 1,
    ).astype(np.int64)
    dev = device[player]
    rates = _rates(config)
    key = ((day * config.builds + build) * len(DEVICE_FAMILIES) + dev) * config.levels + level
    size = config.days * config.builds * len(DEVICE_FAMILIES) * config.levels
    counts = {"sessions": np.bincount(key, minlength=size)}
    for name in OUTCOMES:
        happened = draws.random(len(key)) < rates[name][build, dev, level]
        counts[name] = np.bincount(key, weights=happened, minlength=size).astype(np.int64)
    present = np.nonzero(counts["sessions"])[0]
    level_of, rest = present % config.levels, present // config.levels
    dev_of, rest = rest % len(DEVICE_FAMILIES), rest // len(DEVICE_FAMILIES)
    build_of, day_of = rest % config.builds, rest // config.builds
    names = np.asarray([config.build_name(b) for b in range(config.builds)])
    table = pa.table(
        {
            "day": day_of.astype(np.int32),
            "build": names[build_of],
            "device_family": np.asarray(DEVICE_FAMILIES)[dev_of],
            "level": level_of.astype(np.int32),
            **{name: counts[name][present] for name in ("sessions", *OUTCOMES)},
        },
        schema=TELEMETRY_SCHEMA,
    )
    return {"telemetry": table}


def truth_tables(config: BuildConfig) -> dict[str, pa.Table]:
    """``builds`` (name, release day) and ``regressions`` (the injected ones)."""
    releases = [b * config.release_every_days for b in range(config.builds)]
    builds = pa.table(
        {"build": [config.build_name(b) for b in range(config.builds)], "release_day": releases},
        schema=BUILDS_SCHEMA,
    )
    rows = [
        {
            "build": config.build_name(r.build),
            "release_day": releases[r.build],
            "metric": r.metric,
            "dimension": r.dimension,
            "value": DEVICE_FAMILIES[r.value] if r.dimension == "device_family" else str(r.value),
            "multiplier": r.multiplier,
        }
        for r in injected_regressions(config)
    ]
    return {"builds": builds, "regressions": pa.Table.from_pylist(rows, schema=REGRESSIONS_SCHEMA)}


class BuildTelemetryOptions(StageOptions):
    """Options of ``synth.build_telemetry``."""

    players: int = Field(default=20_000, ge=1, le=10_000_000)
    seed: int = Field(default=0, ge=0)
    builds: int = Field(default=8, ge=3, le=100)
    release_every_days: int = Field(default=4, ge=1)
    days_after_last: int = Field(default=12, ge=1)
    levels: int = Field(default=20, ge=1, le=1000)
    sessions_per_day: float = Field(default=0.7, gt=0)
    regressions: int = Field(default=3, ge=0)
    shard_players: int = Field(default=20_000, ge=1)


class BuildTelemetryStage(Stage[BuildTelemetryOptions]):
    """Generate build telemetry (``telemetry``), the releases (``builds``) and the truth
    (``regressions``)."""

    kind = "synth.build_telemetry"
    options = BuildTelemetryOptions
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("telemetry", "builds", "regressions")

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: BuildTelemetryOptions,
    ) -> StageResult:
        from raypipe.io.dataset import write_dataset

        config = BuildConfig(**options.model_dump())
        metadata = {
            "generator": "raypipe.synth.builds",
            "seed": config.seed,
            "players": config.players,
        }
        manifests = run_sharded(
            generate_build_shard,
            config,
            config.shards,
            {"telemetry": context.output_url("telemetry")},
            {"telemetry": TELEMETRY_SCHEMA},
            context.executor,
            task_name="synth.build_shard",
            metadata=metadata,
            storage_options=context.storage_options,
        )
        for name, table in truth_tables(config).items():
            manifests[name] = write_dataset(
                context.output_url(name),
                table,
                metadata=metadata,
                storage_options=dict(context.storage_options) or None,
            )
        metrics = {
            "players": config.players,
            "days": config.days,
            "builds": config.builds,
            "injected_regressions": manifests["regressions"].rows,
            "telemetry_rows": manifests["telemetry"].rows,
        }
        return StageResult(
            outputs=manifests, metrics=metrics, rows_out=sum(m.rows for m in manifests.values())
        )
