"""Federated XGBoost by bagging: every client boosts trees on top of the global model and the
server appends them, editing the booster JSON as Flower's ``aggregate_bagging`` does.

After ``R`` rounds with ``M`` clients and ``num_local_round`` local rounds the global model holds
``M * R * num_local_round`` trees. Flower appends only ``num_parallel_tree`` trees per client
(right for its default ``num_local_round = 1``); here every tree of the client's new-trees model
is appended, one iteration per local round, so larger ``num_local_round`` values are honoured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from raypipe.errors import ModelError
from raypipe.federated.strategies.base import Strategy
from raypipe.federated.xgb_clients import boost_locally  # re-exported: the client side

__all__ = ["FedXgbBagging", "XgbUpdates", "aggregate_bagging", "boost_locally"]


@dataclass(frozen=True)
class XgbUpdates:
    """Clients' answers: booster JSON bytes (new trees only for bagging) and example counts."""

    client_ids: np.ndarray
    models: tuple[bytes, ...]
    num_examples: np.ndarray

    def __len__(self) -> int:
        return len(self.models)


def _model(doc: dict[str, Any]) -> dict[str, Any]:
    try:
        model: dict[str, Any] = doc["learner"]["gradient_booster"]["model"]
        return model
    except (KeyError, TypeError) as exc:
        raise ModelError(
            "booster JSON lacks `learner.gradient_booster.model`",
            hint="federated XGBoost needs a `gbtree` booster saved as JSON",
        ) from exc


def aggregate_bagging(previous: bytes, current: bytes) -> bytes:
    """Append the trees of ``current`` (a client's new trees) to the global model ``previous``.

    Tree ids are renumbered, ``num_trees``, ``iteration_indptr`` and ``tree_info`` extended.
    An empty ``previous`` (round 1) returns ``current``.
    """
    if not previous:
        return current
    prev_doc, curr_doc = json.loads(previous), json.loads(current)
    prev, curr = _model(prev_doc), _model(curr_doc)
    base = int(prev["gbtree_model_param"]["num_trees"])
    trees = curr["trees"]
    for offset, tree in enumerate(trees):
        tree["id"] = base + offset
        prev["trees"].append(tree)
    prev["tree_info"].extend(curr["tree_info"])
    last = prev["iteration_indptr"][-1]
    prev["iteration_indptr"].extend(last + i for i in curr["iteration_indptr"][1:])
    prev["gbtree_model_param"]["num_trees"] = str(base + len(trees))
    return json.dumps(prev_doc).encode()


class FedXgbBagging(Strategy[bytes, XgbUpdates]):
    """Each round, every sampled client's new trees are appended to the global booster."""

    name = "xgb_bagging"
    is_mean = False
    new_trees_only = True

    def __init__(self, *, num_local_round: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_local_round = num_local_round

    def aggregate(self, round_: int, weights: bytes, updates: XgbUpdates) -> bytes:
        model = weights
        for client_model in updates.models:
            model = aggregate_bagging(model, client_model)
        return model
