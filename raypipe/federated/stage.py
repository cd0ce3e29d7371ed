"""Stage kind ``federated.train``: federated training over clients cut from a table.

The input table (e.g. ``features.training_set``) is split into a central test set and the
clients' rows: one client per value of a natural column (``partition.by: country``) or
``partition.clients`` clients, IID or Dirichlet over the label. Clients live in a few workers
of the context's backend (Ray actors, :mod:`raypipe.engine.federation`; this process with
``--inline``), train locally and are aggregated by the chosen strategy, optionally with
client-level DP, and SecAgg+ between the clients and the server or CKKS homomorphic
aggregation (either composes with DP).
``model: xgboost`` trains federated XGBoost with ``strategy: xgb_bagging`` (every sampled client
boosts ``num_local_round`` trees on the global booster; the server appends them) or
``xgb_cyclic`` (one client per round, the booster passed round-robin), as Flower does.
Outputs: ``history`` (one row per round) and ``model`` (``model.json``: weights and scaling, or
metadata plus ``model.ubj`` for XGBoost). Each round is logged to MLflow and the final model is
logged (scikit-learn flavor, or XGBoost UBJ) and, with ``register_as``, registered as
``challenger``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from raypipe.errors import DataError, SpecError
from raypipe.federated.backend import FederationBackend
from raypipe.federated.clients import build_shards
from raypipe.federated.export import export_model
from raypipe.federated.models import LocalTrainSpec, init_params
from raypipe.federated.partition import partition_by_column, partition_dirichlet, partition_iid
from raypipe.federated.privacy import DPFixedClipping, SecAggConfig
from raypipe.federated.privacy.homomorphic import HeConfig
from raypipe.federated.simulation import FederationSpec, run_federation
from raypipe.federated.strategies import STRATEGIES, XGB_STRATEGIES, Strategy
from raypipe.federated.summary import history_table, summarize
from raypipe.federated.xgb_clients import XGB_DEFAULTS, XgbTrainSpec
from raypipe.stages.backend import require
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["FederatedTrainOptions", "FederatedTrainStage", "prepare_matrix", "protections_of"]

logger = logging.getLogger(__name__)


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionOptions(_Block):
    """``by`` a column (one client per value), else ``clients`` IID or Dirichlet(``alpha``)."""

    by: str | None = None
    clients: int = Field(default=20, ge=1)
    alpha: float | None = Field(default=None, gt=0)
    min_partition_size: int = Field(default=10, ge=1)


class DPOptions(_Block):
    noise_multiplier: float = Field(default=1.0, ge=0)
    clipping_norm: float = Field(default=1.0, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)


class SecAggOptions(_Block):
    num_shares: int = Field(default=100, ge=1)
    reconstruction_threshold: int = Field(default=3, ge=1)
    clipping_range: float = Field(default=8.0, gt=0)
    quantization_range: int = Field(default=2**22, ge=2)
    modulus_range: int = Field(default=2**32, ge=2)
    max_weight: float = Field(default=1000.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)


class HomomorphicOptions(_Block):
    """CKKS parameters (TenSEAL); the defaults hold 2,048 values per 64 KB ciphertext."""

    poly_modulus_degree: int = Field(default=4096, ge=1024)
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40)
    scale_bits: int = Field(default=40, ge=20)
    max_weight: float = Field(default=1000.0, gt=0)


class FederatedTrainOptions(StageOptions):
    """Options of ``federated.train``."""

    label: str = "churned"
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=lambda: ["player_id", "cutoff"])
    partition: PartitionOptions = PartitionOptions()
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    holdout_fraction: float = Field(default=0.2, ge=0, lt=1)
    strategy: Literal[
        "fedavg", "fedprox", "fedadam", "fedmedian", "trimmed_mean", "xgb_bagging", "xgb_cyclic"
    ] = "fedavg"
    strategy_options: dict[str, float] = Field(default_factory=dict)
    rounds: int = Field(default=10, ge=1)
    fraction_fit: float = Field(default=1.0, gt=0, le=1)
    min_fit_clients: int = Field(default=2, ge=1)
    min_available_clients: int = Field(default=2, ge=1)
    model: Literal["logistic", "mlp", "xgboost"] = "logistic"
    hidden: int = Field(default=16, ge=1)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=0.1, gt=0)
    num_local_round: int = Field(default=1, ge=1)
    xgb_params: dict[str, float | int | str] = Field(default_factory=dict)
    dp: DPOptions | None = None
    secure_aggregation: SecAggOptions | None = None
    homomorphic: HomomorphicOptions | None = None
    round_timeout_s: float | None = Field(default=120.0, gt=0)
    round_retries: int = Field(default=1, ge=0)
    evaluate_clients: bool = True
    actors: int | None = Field(default=None, ge=1)
    actor_cpus: float = Field(default=0.5, gt=0)
    seed: int = 0
    tracking: bool = True
    experiment: str = "federated"
    register_as: str | None = None

    @model_validator(mode="after")
    def _model_fits_strategy(self) -> FederatedTrainOptions:
        boosted = self.model == "xgboost"
        if boosted != (self.strategy in XGB_STRATEGIES):
            raise ValueError(
                f"`model: {self.model}` cannot be trained with `strategy: {self.strategy}`: "
                "`model: xgboost` needs `strategy: xgb_bagging` or `xgb_cyclic`, and those "
                "strategies need `model: xgboost`"
            )
        protections = (self.dp, self.secure_aggregation, self.homomorphic)
        if boosted and any(p is not None for p in protections):
            raise ValueError(
                "`dp`, `secure_aggregation` and `homomorphic` apply to mean strategies over "
                "weight vectors, not to federated XGBoost (bagging and cyclic exchange trees, "
                "which are not sums); remove them or use a numpy model"
            )
        if self.secure_aggregation is not None and self.homomorphic is not None:
            raise ValueError(
                "`secure_aggregation` and `homomorphic` both hide single updates: keep one"
            )
        if "nthread" in self.xgb_params:
            raise ValueError("`xgb_params.nthread`: every client boosts with one thread")
        return self


def prepare_matrix(
    table: pa.Table,
    label: str,
    features: list[str] | None,
    exclude: list[str],
    *,
    impute: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Float features (nulls -> column mean, or NaN with ``impute=False``) and a 0/1 label."""
    if label not in table.column_names:
        raise SpecError([f"`label`: column `{label}` not in the input {table.column_names}"])
    if features is None:
        skip = {label, *exclude}
        features = [
            f.name
            for f in table.schema
            if f.name not in skip
            and (
                pa.types.is_integer(f.type)
                or pa.types.is_floating(f.type)
                or pa.types.is_boolean(f.type)
            )
        ]
    missing = [c for c in features if c not in table.column_names]
    if missing or not features:
        raise SpecError(
            [
                f"`features`: {missing or 'no numeric columns'} not usable; input has "
                f"{table.column_names}"
            ]
        )
    cols = []
    for name in features:
        v = table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        if impute:
            mean = np.nanmean(v) if np.isfinite(v).any() else 0.0
            v = np.where(np.isfinite(v), v, mean)
        cols.append(v)
    y = table.column(label).cast(pa.float64()).to_numpy(zero_copy_only=False)
    if np.isnan(y).any() or not set(np.unique(y)) <= {0.0, 1.0}:
        raise DataError(
            f"label `{label}` must be 0/1 without nulls",
            hint="federated.train fits binary classifiers",
        )
    return np.column_stack(cols), y, list(features)


def _strategy(options: FederatedTrainOptions) -> Any:
    # Either kind: numpy parameter vectors or booster bytes, as the options chose.
    strategies: dict[str, type[Strategy[Any, Any]]] = {**STRATEGIES, **XGB_STRATEGIES}
    cls = strategies[options.strategy]
    extra: dict[str, Any] = dict(options.strategy_options)
    if options.strategy in XGB_STRATEGIES:
        extra["num_local_round"] = options.num_local_round
    try:
        strategy = cls(
            fraction_fit=options.fraction_fit,
            min_fit_clients=options.min_fit_clients,
            min_available_clients=options.min_available_clients,
            **extra,
        )
    except TypeError as exc:
        raise SpecError([f"`strategy_options` of `{options.strategy}`: {exc}"]) from exc
    if options.dp is not None:
        strategy = DPFixedClipping(
            strategy,
            noise_multiplier=options.dp.noise_multiplier,
            clipping_norm=options.dp.clipping_norm,
            delta=options.dp.delta,
        )
    return strategy


class FederatedTrainStage(Stage[FederatedTrainOptions]):
    """Federated training of a numpy logistic regression or MLP over simulated clients."""

    kind = "federated.train"
    options = FederatedTrainOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("history", "model")

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: FederatedTrainOptions,
    ) -> StageResult:
        from raypipe.io.artifacts import write_artifact
        from raypipe.io.dataset import read_dataset, write_dataset

        started = time.perf_counter()
        data = inputs["data"]
        table = read_dataset(data.url)
        boosted = options.model == "xgboost"
        x, y, names = prepare_matrix(
            table, options.label, options.features, options.exclude, impute=not boosted
        )
        rng = np.random.default_rng([options.seed, 0x7E])
        is_test = rng.random(len(y)) < options.test_fraction
        train_rows = np.flatnonzero(~is_test)
        if boosted:  # trees need neither scaling nor imputation (NaN is XGBoost's missing)
            mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        else:
            mean, scale = x[train_rows].mean(axis=0), x[train_rows].std(axis=0)
            scale = np.where(scale > 0, scale, 1.0)
            x = (x - mean) / scale  # central scaling: a real deployment would aggregate moments
        parts = _partitions(table, y, train_rows, options.partition, options.seed)
        n_shards = options.actors or max(1, int(context.executor.parallelism))
        shards = build_shards(
            x[train_rows],
            y[train_rows],
            parts,
            n_shards,
            holdout_fraction=options.holdout_fraction,
            seed=options.seed,
        )
        local = _local_spec(options)
        secagg = options.secure_aggregation
        spec = FederationSpec(
            rounds=options.rounds,
            local=local,
            round_timeout_s=options.round_timeout_s,
            round_retries=options.round_retries,
            evaluate_clients=options.evaluate_clients,
            secure_aggregation=None
            if secagg is None
            else SecAggConfig(
                num_shares=secagg.num_shares,
                reconstruction_threshold=secagg.reconstruction_threshold,
                clipping_range=secagg.clipping_range,
                quantization_range=secagg.quantization_range,
                modulus_range=secagg.modulus_range,
            ),
            secagg_max_weight=secagg.max_weight
            if secagg
            else (options.homomorphic.max_weight if options.homomorphic else 1000.0),
            secagg_dropout=secagg.dropout if secagg else 0.0,
            homomorphic=None
            if options.homomorphic is None
            else HeConfig(
                poly_modulus_degree=options.homomorphic.poly_modulus_degree,
                coeff_mod_bit_sizes=options.homomorphic.coeff_mod_bit_sizes,
                scale_bits=options.homomorphic.scale_bits,
            ),
            seed=options.seed,
        )
        strategy = _strategy(options)
        tracker = _tracker(context, options, names, len(parts)) if options.tracking else None
        federation = require(context.backend, FederationBackend, stage=context.stage_name)
        backend = federation.federation(shards, num_cpus=options.actor_cpus)
        try:
            result = run_federation(
                backend,
                strategy,
                spec,
                np.empty(0, np.uint8)
                if isinstance(local, XgbTrainSpec)
                else init_params(local, len(names), options.seed),
                test=(x[is_test], y[is_test]),
                on_round=tracker.log_round if tracker else None,
            )
        except Exception:
            if tracker:
                tracker.fail()
            raise
        finally:
            backend.close()
        metrics = summarize(result, local, x, y, train_rows, is_test, len(parts))
        exported = export_model(local, result.weights, mean, scale, names)
        model_json: dict[str, Any] = {
            "kind": "raypipe.federated",
            "model": options.model,
            "format": exported.format,
            "features": names,
            "strategy": options.strategy,
            "metrics": metrics,
        }
        files = {}
        if isinstance(local, XgbTrainSpec):
            model_json["xgb_params"] = dict(local.params)
            model_json["num_local_round"] = options.num_local_round
            files[exported.file_name] = exported.data
        else:
            model_json.update(
                hidden=options.hidden,
                mean=mean.tolist(),
                scale=scale.tolist(),
                weights=result.weights.tolist(),
            )
        context.raise_if_cancelled()  # after Ctrl-C: neither commit nor register the model
        manifests = {
            "history": write_dataset(
                context.output_url("history"),
                history_table(result),
                metadata={"input_version": data.version},
            ),
            "model": write_artifact(
                context.output_url("model"),
                {"model.json": json.dumps(model_json).encode(), **files},
                metadata={"input_version": data.version},
            ),
        }
        if tracker:
            logged = tracker.finish(
                model=exported,
                feature_names=names,
                example=x[:5] * scale + mean,
                summary=metrics,
                register_as=options.register_as,
                data_dir=context.data_dir,
                storage_options=context.storage_options,
            )
            metrics.update(logged)
        metrics["seconds"] = round(time.perf_counter() - started, 3)
        return StageResult(
            outputs=manifests, metrics=metrics, rows_in=len(y), rows_out=len(result.history)
        )


def _partitions(
    table: pa.Table, y: np.ndarray, train_rows: np.ndarray, options: PartitionOptions, seed: int
) -> list[np.ndarray]:
    """Row positions (into ``train_rows``) of each client."""
    if options.by is not None:
        if options.by not in table.column_names:
            raise SpecError([f"`partition.by`: column `{options.by}` not in {table.column_names}"])
        values = table.column(options.by).to_numpy(zero_copy_only=False)[train_rows]
        _, parts = partition_by_column(values)
        return [p for p in parts if len(p) >= options.min_partition_size]
    if options.alpha is not None:
        return partition_dirichlet(
            y[train_rows],
            options.clients,
            options.alpha,
            min_partition_size=options.min_partition_size,
            seed=seed,
        )
    return partition_iid(len(train_rows), options.clients, seed)


def _tracker(
    context: StageContext, options: FederatedTrainOptions, names: list[str], clients: int
) -> Any:
    from raypipe.federated.tracking import FederatedTracker
    from raypipe.tracking.store import resolve_tracking_uri

    params = {
        k: v
        for k, v in options.model_dump().items()
        if not isinstance(v, (dict, list)) and v is not None
    }
    params.update(clients=clients, features=len(names), protections=protections_of(options))
    for block in ("dp", "secure_aggregation", "homomorphic"):
        value = getattr(options, block)
        if value is not None:
            params.update({f"{block}.{k}": v for k, v in value.model_dump().items()})
    if options.model == "xgboost":
        params.update({f"xgb_{k}": v for k, v in {**XGB_DEFAULTS, **options.xgb_params}.items()})
    return FederatedTracker(
        resolve_tracking_uri(None, context.data_dir),
        options.experiment,
        f"{context.stage_name}-{context.run_id}",
        params=params,
        tags={
            "raypipe.run_id": context.run_id,
            "raypipe.stage": context.stage_name,
            "raypipe.stage_kind": "federated.train",
            "raypipe.federated.protections": protections_of(options),
        },
    )


def protections_of(options: FederatedTrainOptions) -> str:
    """Which protections ran, e.g. ``dp+secure_aggregation`` (``none`` for a plain run)."""
    names = [n for n in ("dp", "secure_aggregation", "homomorphic") if getattr(options, n)]
    return "+".join(names) or "none"


def _local_spec(options: FederatedTrainOptions) -> LocalTrainSpec | XgbTrainSpec:
    if options.model == "xgboost":
        return XgbTrainSpec.from_options(
            options.xgb_params,
            options.num_local_round,
            new_trees_only=options.strategy == "xgb_bagging",
        )
    return LocalTrainSpec(
        model=options.model,
        hidden=options.hidden,
        epochs=options.epochs,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
    )
