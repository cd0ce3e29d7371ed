"""Ready feature views for the game telemetry of :mod:`raypipe.synth` (the churn job's default)."""

from __future__ import annotations

from raypipe.features.views import Aggregate, Derived, FeatureView

__all__ = ["PLAYER_ACTIVITY", "default_views"]


def _is(event_type: str) -> str:
    return f'event_type == "{event_type}"'


PLAYER_ACTIVITY = FeatureView(
    name="player_activity",
    entities=("player_id",),
    timestamp="ts",
    description="Engagement, progression and spend of a player before the cutoff.",
    features=(
        Aggregate("sessions_1d", "count", window="1d", where=_is("session_start")),
        Aggregate("sessions_7d", "count", window="7d", where=_is("session_start")),
        Aggregate("sessions_30d", "count", window="30d", where=_is("session_start")),
        Aggregate("events_7d", "count", window="7d"),
        Aggregate("levels_started_7d", "count", window="7d", where=_is("level_start")),
        Aggregate("levels_completed_7d", "count", window="7d", where=_is("level_complete")),
        Aggregate("levels_failed_7d", "count", window="7d", where=_is("level_fail")),
        Aggregate("max_level", "max", column="level"),
        Aggregate("ad_views_7d", "count", window="7d", where=_is("ad_view")),
        Aggregate("social_7d", "count", window="7d", where=_is("social")),
        Aggregate("crashes_7d", "count", window="7d", where=_is("crash")),
        Aggregate("purchases_30d", "count", window="30d", where=_is("purchase")),
        Aggregate("spend_7d", "sum", column="amount", window="7d", where=_is("purchase")),
        Aggregate("spend_30d", "sum", column="amount", window="30d", where=_is("purchase")),
        Aggregate("spend_lifetime", "sum", column="amount", where=_is("purchase")),
        Aggregate("active_days_30d", "count_distinct", column="event_date", window="30d"),
        Aggregate("days_since_last", "time_since_last"),
        Aggregate("days_since_purchase", "time_since_last", where=_is("purchase")),
        Derived("session_trend", "safe_div(sessions_7d * 30, sessions_30d * 7)"),
        Derived("fail_rate_7d", "safe_div(levels_failed_7d, levels_started_7d)"),
        Derived("spend_share_7d", "safe_div(spend_7d, spend_30d)"),
    ),
)


def default_views() -> list[FeatureView]:
    """The views the churn job uses when it declares none."""
    return [PLAYER_ACTIVITY]
