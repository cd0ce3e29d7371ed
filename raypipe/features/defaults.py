"""Ready feature views for the game telemetry of :mod:`raypipe.synth` (the churn job's default).

Churn (no session in the 14 days after the cutoff) is decided by the player's engagement at the
cutoff, which the events show through how often and how recently the player plays, and by how
that activity is trending. :data:`PLAYER_ACTIVITY` therefore counts sessions and active days over
nested recent windows (1, 3, 7, 14, 30 days), measures recency (days since the last session, the
last event, the last completed level), and compares windows (trends and shares), besides
progression, ads, social, crashes and spend.
"""

from __future__ import annotations

from raypipe.features.views import Aggregate, Derived, FeatureView

__all__ = ["PLAYER_ACTIVITY", "default_views"]


def _is(event_type: str) -> str:
    return f'event_type == "{event_type}"'


_SESSION = _is("session_start")

PLAYER_ACTIVITY = FeatureView(
    name="player_activity",
    entities=("player_id",),
    timestamp="ts",
    description="Engagement, its recency and trend, progression and spend before the cutoff.",
    features=(
        # How often the player plays, over nested recent windows.
        Aggregate("sessions_1d", "count", window="1d", where=_SESSION),
        Aggregate("sessions_3d", "count", window="3d", where=_SESSION),
        Aggregate("sessions_7d", "count", window="7d", where=_SESSION),
        Aggregate("sessions_14d", "count", window="14d", where=_SESSION),
        Aggregate("sessions_30d", "count", window="30d", where=_SESSION),
        Aggregate("sessions_lifetime", "count", where=_SESSION),
        Aggregate("active_days_3d", "count_distinct", column="event_date", window="3d"),
        Aggregate("active_days_7d", "count_distinct", column="event_date", window="7d"),
        Aggregate("active_days_14d", "count_distinct", column="event_date", window="14d"),
        Aggregate("active_days_30d", "count_distinct", column="event_date", window="30d"),
        # How recently.
        Aggregate("days_since_last", "time_since_last"),
        Aggregate("days_since_session", "time_since_last", where=_SESSION),
        Aggregate("days_since_complete", "time_since_last", where=_is("level_complete")),
        Aggregate("days_since_purchase", "time_since_last", where=_is("purchase")),
        # What happens in the sessions.
        Aggregate("events_1d", "count", window="1d"),
        Aggregate("events_7d", "count", window="7d"),
        Aggregate("levels_completed_1d", "count", window="1d", where=_is("level_complete")),
        Aggregate("levels_failed_1d", "count", window="1d", where=_is("level_fail")),
        Aggregate("levels_completed_3d", "count", window="3d", where=_is("level_complete")),
        Aggregate("levels_failed_3d", "count", window="3d", where=_is("level_fail")),
        Aggregate("crashes_3d", "count", window="3d", where=_is("crash")),
        Aggregate("levels_started_7d", "count", window="7d", where=_is("level_start")),
        Aggregate("levels_completed_7d", "count", window="7d", where=_is("level_complete")),
        Aggregate("levels_failed_7d", "count", window="7d", where=_is("level_fail")),
        Aggregate("max_level", "max", column="level"),
        Aggregate("ad_views_7d", "count", window="7d", where=_is("ad_view")),
        Aggregate("social_7d", "count", window="7d", where=_is("social")),
        Aggregate("social_30d", "count", window="30d", where=_is("social")),
        Aggregate("crashes_7d", "count", window="7d", where=_is("crash")),
        Aggregate("purchases_30d", "count", window="30d", where=_is("purchase")),
        Aggregate("spend_7d", "sum", column="amount", window="7d", where=_is("purchase")),
        Aggregate("spend_30d", "sum", column="amount", window="30d", where=_is("purchase")),
        Aggregate("spend_lifetime", "sum", column="amount", where=_is("purchase")),
        # Trends: recent activity against the longer window it belongs to (1 = steady).
        Derived("session_trend_3_14", "safe_div(sessions_3d * 14, sessions_14d * 3)"),
        Derived("session_trend_7_30", "safe_div(sessions_7d * 30, sessions_30d * 7)"),
        Derived("session_trend", "safe_div(sessions_7d * 2, sessions_14d)"),
        Derived("active_trend_7_14", "safe_div(active_days_7d * 2, active_days_14d)"),
        Derived("sessions_per_active_day_14d", "safe_div(sessions_14d, active_days_14d)"),
        Derived("social_per_session_7d", "safe_div(social_7d, sessions_7d)"),
        Derived("social_per_session_30d", "safe_div(social_30d, sessions_30d)"),
        Derived("fail_rate_7d", "safe_div(levels_failed_7d, levels_started_7d)"),
        Derived("spend_share_7d", "safe_div(spend_7d, spend_30d)"),
    ),
)


def default_views() -> list[FeatureView]:
    """The views the churn job uses when it declares none."""
    return [PLAYER_ACTIVITY]
