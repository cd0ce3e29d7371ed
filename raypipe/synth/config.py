"""What a synthetic telemetry run generates: the frozen config, its drift, and its shards.

The data is a pure function of :class:`TelemetryConfig` and the shard index: a shard holds a fixed
number of players (``shard_players``), so the output does not depend on how many workers run it,
and each shard draws from its own random streams ``default_rng([seed, shard, stream])``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from raypipe.synth.engagement import MAX_LEVEL

__all__ = [
    "CHURN_HORIZON_DAYS",
    "DEFAULT_CUTOFF",
    "DEFAULT_SHARD_PLAYERS",
    "EVENT_NULLABLE_COLUMNS",
    "DriftConfig",
    "TelemetryConfig",
]

#: A player churned when they have no session in this many days after the cutoff.
CHURN_HORIZON_DAYS = 14
#: A fixed default cutoff keeps the data reproducible whatever day it is generated on.
DEFAULT_CUTOFF = dt.date(2026, 1, 1)
#: Players per shard: one Ray task generates and writes one shard.
DEFAULT_SHARD_PLAYERS = 10_000

#: Columns of ``events`` a simulated logging bug may blank out (``DriftConfig.null_rate``).
EVENT_NULLABLE_COLUMNS = (
    "ts",
    "event_date",
    "event_type",
    "session_id",
    "platform",
    "level",
    "amount",
    "currency",
    "country",
    "is_fraud",
)


@dataclass(frozen=True)
class DriftConfig:
    """Changes to the world from day ``start_day`` on (day 0 is the first day of history).

    Parameters
    ----------
    start_day
        First affected day, counted from ``cutoff - days``; may lie after the cutoff, in the
        days kept with ``include_future_days``.
    new_platform
        Name of a platform launched on ``start_day``: a share of the players installing from then
        on use it, and it crashes more often.
    price_multiplier
        Prices of purchases from ``start_day`` on are multiplied by this; buyers react (fewer
        purchases when prices rise).
    null_rate
        ``{column: rate}``: a logging bug writes nulls into that ``events`` column for this share
        of the rows from ``start_day`` on.
    social_by_level
        Mean social events per session at each engagement level ``0 .. 5`` from ``start_day`` on,
        in place of the world's own (:data:`raypipe.synth.simulate.SOCIAL_BY_LEVEL`, rising with
        engagement): a game update that changes what social activity says about engagement, the
        relation between a feature and churn (concept drift). Engagement's dynamics do not
        depend on it, so the churn probability stays exact.
    """

    start_day: int = 0
    new_platform: str | None = None
    price_multiplier: float = 1.0
    null_rate: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    social_by_level: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "null_rate", MappingProxyType(dict(self.null_rate)))
        problems = []
        if self.social_by_level is not None:
            social = tuple(float(rate) for rate in self.social_by_level)
            object.__setattr__(self, "social_by_level", social)
            if len(social) != MAX_LEVEL + 1 or any(rate < 0 for rate in social):
                problems.append(
                    f"`social_by_level` must be {MAX_LEVEL + 1} rates >= 0 (levels 0 .. "
                    f"{MAX_LEVEL}), received {list(social)}"
                )
        if self.start_day < 0:
            problems.append(f"`start_day` must be >= 0, received {self.start_day}")
        if self.price_multiplier <= 0:
            problems.append(f"`price_multiplier` must be > 0, received {self.price_multiplier}")
        for column, rate in self.null_rate.items():
            if column not in EVENT_NULLABLE_COLUMNS:
                problems.append(
                    f"`null_rate` names column `{column}`; expected one of "
                    f"{', '.join(EVENT_NULLABLE_COLUMNS)}"
                )
            if not 0.0 <= rate <= 1.0:
                problems.append(f"`null_rate.{column}` must be in [0, 1], received {rate}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def is_active(self) -> bool:
        """Whether this drift changes anything at all."""
        return (
            self.new_platform is not None
            or self.price_multiplier != 1.0
            or any(rate > 0 for rate in self.null_rate.values())
            or self.social_by_level is not None
        )


@dataclass(frozen=True)
class TelemetryConfig:
    """Everything the generated data depends on.

    Parameters
    ----------
    players
        Number of players (ids ``0 .. players - 1``).
    days
        Days of observed history, ending at ``cutoff`` (exclusive).
    seed
        Root seed. Same config, same data, bit for bit.
    cutoff
        The churn cutoff: midnight starting this date. Labels look at the 14 days from it.
    shard_players
        Players per shard (part of the data's identity: another value gives other data).
    drift
        Optional drift from some day on.
    include_future_days
        Days after the cutoff whose events are kept in ``events`` (0: none, since they decide
        the labels and would leak; use >= 14 to see the label window, more for monitoring).
    """

    players: int
    days: int
    seed: int = 0
    cutoff: dt.date = DEFAULT_CUTOFF
    shard_players: int = DEFAULT_SHARD_PLAYERS
    drift: DriftConfig = field(default_factory=DriftConfig)
    include_future_days: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.players < 1:
            problems.append(f"`players` must be >= 1, received {self.players}")
        if self.days < 1:
            problems.append(f"`days` must be >= 1, received {self.days}")
        if self.shard_players < 1:
            problems.append(f"`shard_players` must be >= 1, received {self.shard_players}")
        if self.include_future_days < 0:
            problems.append(
                f"`include_future_days` must be >= 0, received {self.include_future_days}"
            )
        if self.seed < 0:
            problems.append(f"`seed` must be >= 0, received {self.seed}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def shards(self) -> int:
        """How many shards the players split into."""
        return -(-self.players // self.shard_players)

    def shard_bounds(self, shard_index: int) -> tuple[int, int]:
        """Global player ids ``[start, stop)`` of a shard."""
        if not 0 <= shard_index < self.shards:
            raise IndexError(f"shard {shard_index} out of range 0..{self.shards - 1}")
        start = shard_index * self.shard_players
        return start, min(self.players, start + self.shard_players)

    @property
    def simulated_days(self) -> int:
        """History, plus the label window or the kept future days, whichever is longer."""
        return self.days + max(CHURN_HORIZON_DAYS, self.include_future_days)

    @property
    def start_date(self) -> dt.date:
        """Date of day 0."""
        return self.cutoff - dt.timedelta(days=self.days)
