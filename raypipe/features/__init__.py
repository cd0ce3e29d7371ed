"""Features: views, a safe expression language, as-of windows, point-in-time joins, discovery.

Plain polars code, tested without Ray; the stages run it over entity partitions through the
stage executor:

* ``features.training_set`` / ``features.scoring_set`` (:mod:`raypipe.features.stage`),
* ``features.point_in_time_join`` (:mod:`raypipe.features.pit_stage`),
* ``features.discover`` (:mod:`raypipe.features.discover_stage`).
"""

from __future__ import annotations

from raypipe.features.asof import (
    aggregate_views,
    attach_features,
    check_views,
    compile_view,
    compute_features,
)
from raypipe.features.build import FeatureBuild, run_feature_build
from raypipe.features.discover import DiscoveryOptions, run_discovery
from raypipe.features.expressions import ExpressionError, compile_expression
from raypipe.features.pit import FeatureTable, pit_join, pit_join_partitioned
from raypipe.features.pit_stage import run_pit_join
from raypipe.features.selection import FeatureSelector
from raypipe.features.spec import FeatureViewSpec, load_views, parse_views, views_to_yaml
from raypipe.features.suggest import suggest_views, suggest_views_llm
from raypipe.features.views import Aggregate, Derived, FeatureView, parse_window

__all__ = [
    "Aggregate",
    "Derived",
    "DiscoveryOptions",
    "ExpressionError",
    "FeatureBuild",
    "FeatureSelector",
    "FeatureTable",
    "FeatureView",
    "FeatureViewSpec",
    "aggregate_views",
    "attach_features",
    "check_views",
    "compile_expression",
    "compile_view",
    "compute_features",
    "load_views",
    "parse_views",
    "parse_window",
    "pit_join",
    "pit_join_partitioned",
    "run_discovery",
    "run_feature_build",
    "run_pit_join",
    "suggest_views",
    "suggest_views_llm",
    "views_to_yaml",
]
