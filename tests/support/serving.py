"""A small fraud-like model and table for serving tests (trained with raypipe's preprocessing)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import xgboost as xgb

from raypipe.inference.model import ModelBlob
from raypipe.training.preprocess import TablePreprocessor

COUNTRIES = ["DE", "FR", "US", "BR", "NG"]


def purchase_table(rows: int = 400, seed: int = 0) -> pa.Table:
    """``player_id``, numeric features (float32, int64), a categorical and a label."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 5.0, rows).astype(np.float32)
    recent = rng.poisson(1.0, rows).astype(np.int64)
    age = rng.uniform(0, 400, rows).astype(np.float32)
    country = rng.choice(COUNTRIES, rows)
    logit = 0.08 * amount + 0.9 * recent - 0.01 * age + (country == "NG") * 1.5 - 2
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    amount[rng.random(rows) < 0.05] = np.nan  # missing values travel too
    return pa.table(
        {
            "player_id": np.arange(rows, dtype=np.int64),
            "amount": amount,
            "purchases_1h": recent,
            "account_age_days": age,
            "country": country,
            "label": label,
        }
    )


def train_blob(table: pa.Table, *, rounds: int = 8, seed: int = 0, uri: str = "m") -> ModelBlob:
    """An XGBoost model on ``table`` with a target-encoded categorical, as raypipe trains it."""
    label = table["label"].to_numpy()
    pre = TablePreprocessor(exclude=("player_id", "label"), seed=seed).fit(table, label)
    matrix = pre.transform(table, "target", training=True)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "seed": seed, "nthread": 1},
        xgb.DMatrix(matrix.values, label=label, feature_names=list(matrix.feature_names)),
        rounds,
    )
    return ModelBlob.from_bytes(
        bytes(booster.save_raw("ubj")),
        format="xgboost-ubj",
        uri=uri,
        preprocess=pre.to_dict("target"),
    )


def register_blob(data_dir: str, name: str, blob: ModelBlob, alias: str, reason: str) -> str:
    """Log ``blob`` to the data directory's MLflow store as raypipe does, point ``alias`` at it."""
    import hashlib
    import json

    from raypipe.tracking.audit import AuditLog
    from raypipe.tracking.registry import Registry
    from raypipe.tracking.runs import TrackingSession
    from raypipe.tracking.store import audit_path, default_tracking_uri

    uri = default_tracking_uri(data_dir)
    session = TrackingSession(uri, "serving-tests")
    run = session.start_run("r")
    names = [*blob.preprocess["numeric"], *blob.preprocess["categories"]]
    preprocess = json.dumps(blob.preprocess).encode()
    logged = session.log_model(
        run,
        model_bytes=blob.data,
        model_format=blob.format,
        feature_names=names,
        input_example=np.zeros((1, len(names)), np.float32),
        predictions=np.zeros(1),
        extra_files={"preprocess.json": preprocess},
    )
    session.end_run(run)
    registry = Registry(uri, AuditLog(audit_path(data_dir)))
    version = registry.register(
        name,
        logged.model_uri,
        run_id=run,
        tags={
            "raypipe.sha256": logged.sha256,
            "raypipe.model_file": logged.model_file,
            "raypipe.format": logged.format,
            "raypipe.preprocess_sha256": hashlib.sha256(preprocess).hexdigest(),
        },
    )
    registry.set_alias(name, alias, version, action="promote", reason=reason)
    return version
