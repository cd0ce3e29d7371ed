"""The served-view registry: versions are content hashes of the definition."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from raypipe.errors import DataError, SpecError
from raypipe.features.defaults import PLAYER_ACTIVITY
from raypipe.features.store.registry import (
    ServedView,
    current_view,
    diff_views,
    list_views,
    load_view,
    register_view,
    served_view_of,
    view_history,
)


def _view(**changes: object) -> ServedView:
    base = served_view_of(
        "churn_player",
        [PLAYER_ACTIVITY],
        entities=["player_id"],
        timestamp="cutoff",
        source="scoring_features.scoring_set",
        columns=["sessions_7d", "spend_30d"],
        owner="ml",
        freshness_sla_s=3600,
    )
    return replace(base, version="", **changes) if changes else base


def test_same_definition_same_version_metadata_does_not_count() -> None:
    assert _view().version == _view().version
    assert _view(owner="someone else", freshness_sla_s=1.0).version == _view().version
    assert len(_view().version) == 64


def test_changed_definition_is_a_new_version() -> None:
    assert _view(columns=("sessions_7d",)).version != _view().version
    assert _view(max_age_s=60.0).version != _view().version
    assert _view(definition=()).version != _view().version


def test_register_list_show_diff(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    first, created = register_view(data_dir, _view())
    assert created and first.registered_at
    again, created = register_view(data_dir, _view(owner="data team"))
    assert not created and again.version == first.version
    assert again.registered_at == first.registered_at
    assert current_view(data_dir, "churn_player").owner == "data team"

    second, created = register_view(data_dir, _view(columns=("sessions_7d",)))
    assert created
    assert current_view(data_dir, "churn_player").version == second.version
    assert [h["version"] for h in view_history(data_dir, "churn_player")] == [
        first.version,
        second.version,
    ]
    assert load_view(data_dir, "churn_player", first.version[:8]).columns == (
        "sessions_7d",
        "spend_30d",
    )
    assert [v.name for v in list_views(data_dir)] == ["churn_player"]
    diff = diff_views(load_view(data_dir, "churn_player", first.version[:8]), second)
    assert any(line.startswith('-  "spend_30d"') for line in diff)
    assert diff_views(second, second) == []


def test_unknown_names_and_versions_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not registered"):
        current_view(str(tmp_path), "nope")
    register_view(str(tmp_path), _view())
    with pytest.raises(DataError, match="no version"):
        load_view(str(tmp_path), "churn_player", "ffffffff")


def test_bad_definitions_are_rejected() -> None:
    with pytest.raises(SpecError, match="also in `columns`"):
        _view(columns=("player_id",))
    with pytest.raises(SpecError, match="not an identifier"):
        _view(name="churn player")


def test_registry_works_on_any_fsspec_url() -> None:
    data_dir = "memory://registry-test"
    record, _ = register_view(data_dir, _view())
    assert current_view(data_dir, "churn_player") == record
