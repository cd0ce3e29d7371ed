"""Fraud features as of each purchase: request fields plus streaming windows, batch = online.

A purchase is scored the moment it happens, so every feature must be known then:

* **request fields** the payment backend knows: ``amount``, ``foreign_card`` (card country is
  not the account's home country), ``account_age_h`` (hours since install);
* **streaming windows** over the player's purchases (:data:`WINDOWS`, sliding, from
  :mod:`raypipe.features.streaming`): the count and sum of purchases in the newest *closed*
  window, i.e. the window ending at ``floor(ts / slide) * slide``. Online, the stream operator
  pushes each closed window to the store (event time = window end) and the served view's
  ``max_age`` is one slide, so a player whose newest window is older reads as missing; in
  batch, the join on that window end gives the same values and the same nulls. The purchase
  itself lies after its window's end: no label leaks into its features.

Device changes are not simulated by the generator, so there is no device feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, cast

import polars as pl
import pyarrow as pa

from raypipe.features.store.registry import ServedView, register_view
from raypipe.features.streaming.windows import WindowSpec, batch_windows, event_micros
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = [
    "REQUEST_FIELDS",
    "WINDOWS",
    "WINDOW_COLUMNS",
    "PurchaseTimeOptions",
    "PurchaseTimeStage",
    "feature_names",
    "purchase_requests",
    "training_set",
    "window_features",
    "window_views",
]

_MIN = 60 * 1_000_000
#: View name -> window over the player's purchases (value: amount).
WINDOWS: Mapping[str, WindowSpec] = {
    "purchases_10m": WindowSpec("sliding", "player_id", "ts", "amount", size=10 * _MIN, slide=_MIN),
    "purchases_1h": WindowSpec(
        "sliding", "player_id", "ts", "amount", size=60 * _MIN, slide=5 * _MIN
    ),
}
WINDOW_COLUMNS = ("count", "sum")
REQUEST_FIELDS = ("amount", "foreign_card", "account_age_h")


def feature_names() -> list[str]:
    """The model's features: request fields, then ``view__column`` of every window."""
    return [*REQUEST_FIELDS, *(f"{v}__{c}" for v in WINDOWS for c in WINDOW_COLUMNS)]


def window_views(source: str) -> list[ServedView]:
    """The served views of :data:`WINDOWS` (values expire one slide after their window ends)."""
    return [
        ServedView(
            name=name,
            entities=("player_id",),
            timestamp="end",
            source=source,
            columns=WINDOW_COLUMNS,
            max_age_s=(spec.slide - 1) / 1e6,
            description=f"purchases of the player in the newest closed {spec.size // _MIN}-minute "
            "window",
        )
        for name, spec in WINDOWS.items()
    ]


def purchase_requests(events: pl.DataFrame, players: pl.DataFrame) -> pl.DataFrame:
    """One row per purchase: the key, time, session and the request fields."""
    home = players.select("player_id", home="country", installed="install_date")
    return (
        events.filter(pl.col("event_type") == "purchase")
        .join(home, on="player_id")
        .select(
            "player_id",
            "ts",
            "session_id",
            pl.col("amount"),
            (pl.col("country") != pl.col("home"))
            .fill_null(False)
            .cast(pl.Int8)
            .alias("foreign_card"),
            (
                (pl.col("ts") - pl.col("installed").cast(pl.Datetime("us"))).dt.total_seconds()
                / 3600
            ).alias("account_age_h"),
        )
        .sort("ts", "player_id")
    )


def window_features(purchases: pl.DataFrame) -> pl.DataFrame:
    """``purchases`` with ``view__count``/``view__sum`` of the newest closed window (or null)."""
    out = purchases.with_columns(event_micros(purchases, "ts").alias("_ts"))
    for name, spec in WINDOWS.items():
        windows = batch_windows(purchases, spec).select(
            pl.col("key").alias("player_id"),
            pl.col("end").alias(f"_{name}_end"),
            *(pl.col(c).cast(pl.Float64).alias(f"{name}__{c}") for c in WINDOW_COLUMNS),
        )
        out = out.with_columns(
            (pl.col("_ts") - pl.col("_ts").mod(spec.slide)).alias(f"_{name}_end")
        ).join(windows, on=["player_id", f"_{name}_end"], how="left")
    return out.drop(pl.selectors.starts_with("_"))


def training_set(events: pl.DataFrame, players: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Features of every purchase with its label and true probability (from ``fraud_truth``).

    ``purchase_id`` numbers the purchases in time order (a key for the truth join).
    """
    features = window_features(purchase_requests(events, players))
    labels = truth.select("player_id", "ts", "session_id", "is_fraud", "fraud_probability")
    return (
        features.join(labels, on=["player_id", "ts", "session_id"], how="inner")
        .sort("ts", "player_id", "session_id")
        .with_columns(pl.col("is_fraud").cast(pl.Int8), pl.int_range(pl.len()).alias("purchase_id"))
    )


class PurchaseTimeOptions(StageOptions):
    """``features.purchase_time`` has no options: the windows are :data:`WINDOWS`."""


class PurchaseTimeStage(Stage[PurchaseTimeOptions]):
    """Stage kind ``features.purchase_time``: the fraud training set and its truth.

    Outputs ``training_set`` (features, ``is_fraud``, keys) and ``truth`` (``purchase_id``,
    ``fraud_probability``, for ``train.search``'s ``truth`` input); registers the window views.
    """

    kind = "features.purchase_time"
    options = PurchaseTimeOptions
    inputs: ClassVar[tuple[str, ...]] = ("events", "players", "truth")
    outputs: ClassVar[tuple[str, ...]] = ("training_set", "truth")

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: PurchaseTimeOptions,
    ) -> StageResult:
        storage = dict(context.storage_options) or None

        def read(name: str, columns: list[str] | None = None) -> pl.DataFrame:
            table = read_dataset(inputs[name].url, columns=columns, storage_options=storage)
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            return frame

        events = read(
            "events", ["player_id", "ts", "session_id", "event_type", "amount", "country"]
        )
        table = training_set(
            events.filter(pl.col("event_type") == "purchase"),
            read("players", ["player_id", "country", "install_date"]),
            read("truth"),
        )
        # The window views are registered so a service can look them up; a stream fills them.
        for view in window_views(inputs["events"].url):
            register_view(context.data_dir, view, storage_options=storage)
        arrow: pa.Table = table.drop("fraud_probability").to_arrow()
        manifest = write_dataset(context.output_url("training_set"), arrow, storage_options=storage)
        truth: pa.Table = table.select("purchase_id", "fraud_probability").to_arrow()
        truth_manifest = write_dataset(context.output_url("truth"), truth, storage_options=storage)
        metrics = {
            "purchases": table.height,
            # The share of true values in a boolean column (None when it has no rows).
            "fraud_rate": round(cast("float | None", table["is_fraud"].mean()) or 0.0, 4),
        }
        return StageResult(
            outputs={"training_set": manifest, "truth": truth_manifest},
            metrics=metrics,
            rows_in=inputs["events"].rows,
            rows_out=table.height,
        )
