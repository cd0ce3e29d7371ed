"""Federated learning simulation: partitioning, numpy and XGBoost clients, strategies, privacy.

A functional core over numpy, tested without Ray: :mod:`~raypipe.federated.partition` cuts rows
into clients, :mod:`~raypipe.federated.models` trains them (vectorised over clients),
:mod:`~raypipe.federated.xgb_clients` boosts XGBoost clients,
:mod:`~raypipe.federated.strategies` aggregates (weight vectors, or boosters by bagging and
cyclic training), :mod:`~raypipe.federated.privacy` adds client-level DP, SecAgg+ between
parties and CKKS homomorphic aggregation (the clients' side in
:mod:`~raypipe.federated.secure_clients`, the server's in
:mod:`~raypipe.federated.secure_rounds`), :mod:`~raypipe.federated.simulation` runs the rounds.
The Ray shell is :mod:`raypipe.engine.federation`; the stage kind is ``federated.train``.
"""

from __future__ import annotations

from raypipe.federated.clients import ClientGroup, ClientShard, FailureInjection, build_shards
from raypipe.federated.models import LocalTrainSpec, init_params, predict_proba
from raypipe.federated.partition import partition_by_column, partition_dirichlet, partition_iid
from raypipe.federated.simulation import (
    FederatedResult,
    FederationSpec,
    InlineFederation,
    RoundRecord,
    run_federation,
)
from raypipe.federated.xgb_clients import XGB_DEFAULTS, XgbTrainSpec

__all__ = [
    "XGB_DEFAULTS",
    "ClientGroup",
    "ClientShard",
    "FailureInjection",
    "FederatedResult",
    "FederationSpec",
    "InlineFederation",
    "LocalTrainSpec",
    "RoundRecord",
    "XgbTrainSpec",
    "build_shards",
    "init_params",
    "partition_by_column",
    "partition_dirichlet",
    "partition_iid",
    "predict_proba",
    "run_federation",
]
