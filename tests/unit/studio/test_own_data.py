"""The studio stages on a studio's own data: CSV files through ``ingest``, no truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raypipe.buildqa.stage import BuildQaOptions, BuildQaStage
from raypipe.engine.inline import InlineBackend
from raypipe.ingest.stage import IngestOptions, IngestStage
from raypipe.io.dataset import read_dataset
from raypipe.recommend.stage import AlsOptions, AlsStage
from raypipe.stages.base import DatasetInput, StageContext


def _ingest(tmp_path: Path, name: str, csv: str, schema: dict[str, str]) -> DatasetInput:
    source = tmp_path / f"{name}.csv"
    source.write_text(csv)
    context = StageContext(name, str(tmp_path / "data"), "r", InlineBackend())
    result = IngestStage().run(
        context, {}, IngestOptions.model_validate({"source": str(source), "schema": schema})
    )
    return DatasetInput(context.output_url("data"), result.outputs["data"])


def test_recommendations_from_an_ingested_log_with_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # two taste groups: users 0-49 use items 0-9, users 50-99 items 10-19
    lines = ["user,sku,minutes"]
    for user in range(100):
        for _ in range(8):
            item = rng.integers(0, 10) + (10 if user >= 50 else 0)
            lines.append(f"u{user},{item},{rng.integers(1, 30)}")
    interactions = _ingest(
        tmp_path,
        "log",
        "\n".join(lines) + "\n",
        {"user": "string", "sku": "int64", "minutes": "double"},
    )
    context = StageContext("recommend", str(tmp_path / "data"), "r", InlineBackend())
    result = AlsStage().run(
        context,
        {"interactions": interactions},
        AlsOptions(
            user_column="user",
            item_column="sku",
            event_column=None,
            weight_column="minutes",
            factors=4,
            iterations=10,
            top_k=5,
        ),
    )
    lists = read_dataset(context.output_url("recommendations")).to_pandas()
    assert result.metrics["users"] == 100
    # the studio's own column names and string ids, kept
    assert list(lists.columns) == ["user", "rank", "sku", "score", "source"]
    group = lists["user"].str[1:].astype(int) >= 50
    in_taste = (lists["sku"] >= 10) == group
    assert in_taste.mean() > 0.9


def test_build_qa_on_ingested_counts_with_other_column_names(tmp_path: Path) -> None:
    lines = ["date,version,gpu,runs,hangs"]
    for day in range(4):
        for version in ("2.0", "2.1"):
            if version == "2.1" and day < 2:
                continue
            for gpu in ("a", "b", "c"):
                hangs = 60 if (version == "2.1" and gpu == "c") else 5
                lines.append(f"{day},{version},{gpu},1000,{hangs}")
    telemetry = _ingest(
        tmp_path,
        "crashes",
        "\n".join(lines) + "\n",
        {"date": "int32", "version": "string", "gpu": "string", "runs": "int64", "hangs": "int64"},
    )
    context = StageContext("detect", str(tmp_path / "data"), "r", InlineBackend())
    result = BuildQaStage().run(
        context,
        {"telemetry": telemetry},
        BuildQaOptions(
            build_column="version",
            time_column="date",
            dimensions=["gpu"],
            exposure="runs",
            outcomes=["hangs"],
        ),
    )
    assert result.metrics["top_findings"][0]["build"] == "2.1"
    assert result.metrics["top_findings"][0]["value"] == "c"
    assert result.metrics["findings"] == 1
    assert "quality" not in result.metrics  # no truth, no score
