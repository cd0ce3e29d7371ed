"""Feature views in YAML: pydantic models at the edge, converted to :mod:`views` dataclasses.

.. code-block:: yaml

    views:
      - name: activity
        entities: [player_id]
        timestamp: ts
        where: 'event_type != "crash"'
        features:
          - {name: sessions_7d, agg: count, window: 7d, where: 'event_type == "session_start"'}
          - {name: spend_30d, agg: sum, column: amount, window: 30d}
          - {name: days_since_last, agg: time_since_last}
          - {name: spend_trend, expr: 'safe_div(spend_7d * 30, spend_30d * 7)'}

A feature has either ``agg`` (an aggregate) or ``expr`` (a derived feature). Every problem of a
file is reported at once with its position (``views[0].features[2]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raypipe.errors import SpecError
from raypipe.features.views import LIFETIME, Aggregate, Derived, FeatureView
from raypipe.spec.bounded_yaml import parse_bounded_yaml

__all__ = [
    "FeatureSpec",
    "FeatureViewSpec",
    "FeatureViewsSpec",
    "load_views",
    "parse_views",
    "view_to_dict",
    "views_to_yaml",
]


class FeatureSpec(BaseModel):
    """One feature: an aggregate (``agg``) or a derived expression (``expr``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    agg: str | None = None
    column: str | None = None
    window: str = LIFETIME
    where: str | None = None
    unit: str = "d"
    expr: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FeatureSpec:
        if (self.agg is None) == (self.expr is None):
            raise ValueError(f"feature `{self.name}` needs exactly one of `agg` or `expr`")
        return self

    def to_feature(self) -> Aggregate | Derived:
        if self.expr is not None:
            return Derived(self.name, self.expr)
        assert self.agg is not None
        return Aggregate(self.name, self.agg, self.column, self.window, self.where, self.unit)


class FeatureViewSpec(BaseModel):
    """One feature view as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    entities: list[str] = Field(min_length=1)
    timestamp: str = "ts"
    source: str = "events"
    where: str | None = None
    description: str = ""
    features: list[FeatureSpec] = Field(min_length=1)

    def to_view(self) -> FeatureView:
        return FeatureView(
            name=self.name,
            entities=tuple(self.entities),
            timestamp=self.timestamp,
            features=tuple(f.to_feature() for f in self.features),
            where=self.where,
            source=self.source,
            description=self.description,
        )


class FeatureViewsSpec(BaseModel):
    """A file of feature views."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    views: list[FeatureViewSpec] = Field(min_length=1)


def parse_views(data: Any, *, source: str | None = None) -> list[FeatureView]:
    """Feature views from parsed YAML: ``{views: [...]}``, a list of views, or one view.

    Raises
    ------
    SpecError
        Every schema problem with its location, then every structural problem of the views.
    """
    if isinstance(data, Mapping) and "views" not in data:
        data = {"views": [data]}
    elif isinstance(data, Sequence) and not isinstance(data, str):
        data = {"views": list(data)}
    try:
        spec = FeatureViewsSpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"`{'.'.join(str(p) for p in error['loc']) or '(root)'}`: {error['msg']}"
            for error in exc.errors()
        ]
        raise SpecError(
            problems, source=source, hint="see the feature view format in raypipe.features.spec"
        ) from exc
    views = [view.to_view() for view in spec.views]
    problems = [problem for view in views for problem in view.problems()]
    if problems:
        raise SpecError(problems, source=source, hint="fix the feature views")
    return views


def load_views(path: str | Path) -> list[FeatureView]:
    """Read feature views from a YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(
            [f"cannot read `{path}`: {exc.strerror}"], source=str(path), hint="check the path"
        ) from exc
    data = parse_bounded_yaml(text, str(path))
    return parse_views(data, source=str(path))


def view_to_dict(view: FeatureView) -> dict[str, Any]:
    """The YAML document of one view (what :func:`parse_views` reads back), defaults omitted."""
    features: list[dict[str, Any]] = []
    for feature in view.features:
        if isinstance(feature, Derived):
            features.append({"name": feature.name, "expr": feature.expression})
            continue
        item: dict[str, Any] = {"name": feature.name, "agg": feature.function}
        if feature.column:
            item["column"] = feature.column
        if feature.window != LIFETIME:
            item["window"] = feature.window
        if feature.where:
            item["where"] = feature.where
        if feature.function == "time_since_last" and feature.unit != "d":
            item["unit"] = feature.unit
        features.append(item)
    document: dict[str, Any] = {
        "name": view.name,
        "entities": list(view.entities),
        "timestamp": view.timestamp,
    }
    if view.source != "events":
        document["source"] = view.source
    if view.where:
        document["where"] = view.where
    if view.description:
        document["description"] = view.description
    document["features"] = features
    return document


def views_to_yaml(views: Sequence[FeatureView]) -> str:
    """YAML text of ``views`` that :func:`parse_views` reads back."""
    documents = [view_to_dict(view) for view in views]
    return yaml.safe_dump({"views": documents}, sort_keys=False, width=100)
