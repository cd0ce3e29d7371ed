"""``run_discovery``: generate candidates, compute them point in time, select, write the report.

The whole flow behind ``raypipe features discover`` and the ``features.discover`` stage:

1. pick the event types (most frequent values) and numeric event columns;
2. compute every candidate view as of each label's cutoff with the distributed feature build
   (entity partitions as executor tasks) and commit it as the ``candidates`` dataset;
3. add entity terms (squares, interactions, value against the group mean) from ``players``;
4. select with :class:`~raypipe.features.selection.FeatureSelector`;
5. commit the ``report`` artifact: ``report.html`` (importance table, SVG heatmap),
   ``selection.json`` and ``selected_views.yaml`` (the selected view features, ready to paste).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from raypipe.errors import SchemaError
from raypipe.features.build import FeatureBuild, run_feature_build
from raypipe.features.candidates import DiscoverySpec, add_entity_terms, candidate_views, top_values
from raypipe.features.expressions import Kind, compile_expression
from raypipe.features.report import render_selection_html
from raypipe.features.selection import FeatureSelector
from raypipe.features.spec import views_to_yaml
from raypipe.features.views import FeatureView
from raypipe.io.artifacts import write_artifact
from raypipe.io.dataset import DatasetWriter, read_dataset, scan_dataset
from raypipe.io.manifest import Manifest
from raypipe.io.sources import open_dataset

__all__ = ["DiscoveryOptions", "DiscoveryResult", "run_discovery", "selected_views"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveryOptions:
    """Knobs of a discovery run (the stage's and the CLI's options map onto these)."""

    keys: tuple[str, ...] = ("player_id",)
    timestamp: str = "ts"
    cutoff_column: str = "cutoff"
    label: str = "churned"
    type_column: str | None = "event_type"
    max_types: int = 8
    numeric_columns: tuple[str, ...] | None = None
    windows: tuple[str, ...] = ("1d", "7d", "30d")
    k: int | None = None
    max_correlation: float = 0.95
    leakage_auc: float = 0.98
    partitions: int | None = None
    exclude_columns: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DiscoveryResult:
    """The committed outputs and the selection."""

    candidates: Manifest
    report: Manifest
    selected: list[str]
    leaky: list[str]
    candidate_count: int


def _numeric_event_columns(schema: Any, options: DiscoveryOptions) -> tuple[str, ...]:
    if options.numeric_columns is not None:
        return options.numeric_columns
    skip = {*options.keys, options.timestamp, *options.exclude_columns}
    return tuple(
        name
        for name, dtype in schema.items()
        if dtype.is_float() and name not in skip and not name.endswith("_id")
    )


def selected_views(views: Sequence[FeatureView], selected: Sequence[str]) -> list[FeatureView]:
    """The views cut down to the selected features (and the aggregates derived ones need)."""
    out = []
    for view in views:
        names = set(view.feature_names)
        wanted = {name for name in selected if name in names}
        for feature in view.derived:
            if feature.name in wanted:
                scope: dict[str, Kind] = {name: "num" for name in names}
                wanted |= compile_expression(feature.expression, scope).names
        kept = tuple(f for f in view.features if f.name in wanted)
        if kept:
            out.append(
                FeatureView(
                    f"{view.name}_selected",
                    view.entities,
                    view.timestamp,
                    kept,
                    view.where,
                    view.source,
                    "selected by raypipe discovery",
                )
            )
    return out


def run_discovery(
    events_url: str,
    labels_url: str,
    candidates_url: str,
    report_url: str,
    executor: Any,
    *,
    players_url: str | None = None,
    options: DiscoveryOptions | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> DiscoveryResult:
    """Discover and select features; see the module docstring for the steps."""
    options = options or DiscoveryOptions()
    storage = dict(storage_options or {}) or None
    events = scan_dataset(events_url, storage_options=storage)
    schema = events.collect_schema()
    labels_schema = open_dataset(labels_url, storage).schema
    if options.label not in labels_schema.names:
        raise SchemaError(
            f"labels have no column `{options.label}` "
            f"(columns: {', '.join(f'`{c}`' for c in labels_schema.names)})",
            hint="set `label` to the label column",
        )
    types: tuple[str, ...] = ()
    type_column = options.type_column if options.type_column in schema else None
    if type_column:
        types = top_values(events.select(type_column), type_column, options.max_types)
    spec = DiscoverySpec(
        options.keys,
        options.timestamp,
        type_column,
        types,
        _numeric_event_columns(schema, options),
        options.windows,
    )
    views = candidate_views(spec)
    build = FeatureBuild(
        events_url=events_url,
        views=tuple(views),
        entities_url=labels_url,
        keys=options.keys,
        out=DatasetWriter(candidates_url, storage_options=storage),
        cutoff_column=options.cutoff_column,
        entity_columns=tuple(dict.fromkeys([*options.keys, options.cutoff_column, options.label])),
        storage_options=dict(storage or {}),
    )
    built = run_feature_build(
        build, executor, partitions=options.partitions, name="features.discover"
    )
    frame = pl.from_arrow(read_dataset(candidates_url, storage_options=storage))
    assert isinstance(frame, pl.DataFrame)
    frame = _with_entity_terms(frame, players_url, options, storage)
    target = frame[options.label]
    features = frame.drop([*options.keys, options.cutoff_column, options.label])
    selector = FeatureSelector(
        options.k, max_correlation=options.max_correlation, leakage_auc=options.leakage_auc
    ).fit(features, target)
    chosen = selected_views(views, selector.selected_)
    entity_terms = [n for n in selector.selected_ if n not in set(views[0].feature_names)]
    summary = {
        "label": options.label,
        "rows": frame.height,
        "event types": ", ".join(types),
        "windows": ", ".join(options.windows),
    }
    page = render_selection_html(
        selector.scores_, selector.correlation_, selector.correlation_names_, summary=summary
    )
    selection = {
        "selected": selector.selected_,
        "leakage": selector.leaky_,
        "entity_terms_selected": entity_terms,
        "task": selector.task_,
        "scores": [asdict(s) for s in selector.scores_],
    }
    report = write_artifact(
        report_url,
        {
            "report.html": page.encode(),
            "selection.json": json.dumps(selection, indent=1).encode(),
            "selected_views.yaml": views_to_yaml(chosen).encode() if chosen else b"views: []\n",
        },
        metadata={
            "selected": selector.selected_,
            "leakage": selector.leaky_,
            "candidates_version": built.manifest.version,
        },
        storage_options=storage,
    )
    logger.info(
        "discovery: %d candidates, %d selected, %d flagged",
        features.width,
        len(selector.selected_),
        len(selector.leaky_),
    )
    return DiscoveryResult(
        built.manifest, report, list(selector.selected_), list(selector.leaky_), features.width
    )


def _with_entity_terms(
    frame: pl.DataFrame,
    players_url: str | None,
    options: DiscoveryOptions,
    storage: Mapping[str, Any] | None,
) -> pl.DataFrame:
    if not players_url:
        return frame
    keys = list(options.keys)
    players = pl.from_arrow(read_dataset(players_url, storage_options=storage))
    assert isinstance(players, pl.DataFrame)
    players = players.unique(subset=keys, keep="first")
    skip = {*keys, *options.exclude_columns}
    numeric = [
        c
        for c, t in players.schema.items()
        if t.is_numeric() and c not in skip and not c.endswith("_id")
    ]
    categorical = [
        c for c, t in players.schema.items() if t in (pl.String, pl.Categorical) and c not in skip
    ]
    attributes = players.select(*keys, *numeric, *categorical).rename(
        {c: f"player_{c}" for c in (*numeric, *categorical)}
    )
    frame = frame.join(attributes, on=keys, how="left", maintain_order="left")
    windows = [w for w in options.windows if w != "lifetime"]
    targets = [c for c in (f"n_all_{windows[-1]}" if windows else "",) if c in frame.columns]
    frame = add_entity_terms(
        frame,
        numeric=[f"player_{c}" for c in numeric],
        categorical=[f"player_{c}" for c in categorical],
        group_targets=targets,
    )
    return frame.drop([f"player_{c}" for c in categorical])
