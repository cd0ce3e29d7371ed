"""Feature views from YAML: round trip and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raypipe.errors import SpecError
from raypipe.features.defaults import default_views
from raypipe.features.spec import load_views, parse_views, views_to_yaml
from raypipe.features.views import Aggregate, Derived, parse_window


def test_default_views_round_trip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "views.yaml"
    path.write_text(views_to_yaml(default_views()))
    assert load_views(path) == default_views()


def test_one_view_or_a_list_is_accepted() -> None:
    view = {
        "name": "v",
        "entities": ["player_id"],
        "features": [{"name": "n", "agg": "count", "window": "7d"}, {"name": "d", "expr": "n * 2"}],
    }
    (parsed,) = parse_views(view)
    assert parsed.features == (Aggregate("n", "count", window="7d"), Derived("d", "n * 2"))
    assert parse_views([view]) == [parsed]


def test_every_problem_is_reported_with_its_location() -> None:
    data = yaml.safe_load("""
views:
  - name: v
    entities: [player_id]
    colour: red
    features:
      - {name: a, agg: count, expr: "1"}
      - {name: b}
""")
    with pytest.raises(SpecError) as info:
        parse_views(data, source="views.yaml")
    text = str(info.value)
    assert "`views.0.colour`" in text and "views.yaml" in text
    assert "feature `a` needs exactly one of `agg` or `expr`" in text
    assert "feature `b` needs exactly one" in text


def test_structural_problems_name_view_and_feature() -> None:
    with pytest.raises(SpecError, match=r"view `v` feature `s`: aggregation `sum` needs a"):
        parse_views({"name": "v", "entities": ["k"], "features": [{"name": "s", "agg": "sum"}]})


@pytest.mark.parametrize(
    ("text", "seconds"), [("1d", 86_400), ("12h", 43_200), ("2w", 1_209_600), ("30m", 1_800)]
)
def test_windows(text: str, seconds: int) -> None:
    window = parse_window(text)
    assert window is not None and window.total_seconds() == seconds
    assert parse_window("lifetime") is None
    for bad in ("0d", "7x", "-1d", "d"):
        with pytest.raises(ValueError, match="not valid"):
            parse_window(bad)
