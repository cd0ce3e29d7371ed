"""The default training set of generated churn telemetry, built in this process.

What the churn job's ``features.training_set`` stage builds from ``synth.game_telemetry``'s
tables (the default views, point in time at each player's cutoff), joined with the generator's
exact churn probability. The observability benchmark and its guard test measure how much of the
generated signal the default features carry on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from raypipe.features.build import FeatureBuild, run_feature_build
from raypipe.features.defaults import default_views
from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.io.fs import join_url

__all__ = ["LABEL_COLUMNS", "generated_training_set"]

#: Columns of the training set that are not model inputs.
LABEL_COLUMNS = ("player_id", "cutoff", "churned")


def generated_training_set(
    base: str, executor: object, *, player_columns: Sequence[str] = ()
) -> pl.DataFrame:
    """Build the training set of the telemetry generated under ``base``.

    Returns the features, ``player_columns`` from the players table, the label columns and the
    generator's ``churn_probability``.
    """
    out = join_url(base, "training_set")
    build = FeatureBuild(
        events_url=join_url(base, "events"),
        views=tuple(default_views()),
        entities_url=join_url(base, "churn_labels"),
        keys=("player_id",),
        out=DatasetWriter(out),
        entity_columns=LABEL_COLUMNS,
        players_url=join_url(base, "players"),
        player_columns=tuple(player_columns),
    )
    run_feature_build(build, executor, name="features.training_set")
    truth = pl.from_arrow(read_dataset(join_url(base, "churn_truth")))
    features = pl.from_arrow(read_dataset(out))
    assert isinstance(truth, pl.DataFrame) and isinstance(features, pl.DataFrame)
    return features.join(truth, on="player_id", how="left")
