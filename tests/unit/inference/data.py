"""Small models and Parquet files for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = ("f0", "f1", "f2", "f3")


def train_model(path: Path, *, trees: int = 8, seed: int = 0) -> Path:
    """An XGBoost binary classifier on named features, saved at ``path`` (.json or .ubj)."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] + rng.normal(size=2000) > 0).astype(int)
    matrix = xgb.DMatrix(features, label=labels, feature_names=list(FEATURES))
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, matrix, trees
    )
    booster.save_model(str(path))
    return path


def make_table(rows: int, *, start: int = 0, seed: int = 1, day: str = "d0") -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "player_id": pa.array(np.arange(start, start + rows, dtype=np.int64)),
        "day": pa.array([day] * rows),
    }
    for name in FEATURES:
        columns[name] = pa.array(rng.normal(size=rows).astype(np.float32))
    columns["extra"] = pa.array(np.zeros(rows, dtype=np.int8))
    return pa.table(columns)


def write_files(folder: Path, files: int, rows: int) -> list[Path]:
    """``files`` Parquet files of ``rows`` rows each, ids 0..files*rows-1."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        path = folder / f"part-{index:03d}.parquet"
        pq.write_table(
            make_table(rows, start=index * rows, seed=index, day=f"d{index % 2}"),
            path,
            row_group_size=max(1, rows // 3),
        )
        paths.append(path)
    return paths


def oracle_scores(model_path: Path, folder: Path) -> dict[int, float]:
    """Brute force: score every file with a fresh DMatrix, by player id."""
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(model_path))
    scores: dict[int, float] = {}
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        if table.num_rows == 0:
            continue
        features = np.column_stack(
            [table[name].to_numpy(zero_copy_only=False) for name in FEATURES]
        ).astype(np.float32)
        predicted = booster.predict(xgb.DMatrix(features, feature_names=list(FEATURES)))
        for player, score in zip(table["player_id"].to_pylist(), predicted, strict=True):
            scores[player] = float(score)
    return scores
