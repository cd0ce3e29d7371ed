"""Simulated clients: data shards, and the group of clients a worker (or a Ray actor) hosts.

A :class:`ClientShard` holds the train and holdout rows of many clients, concatenated, loaded
once. A :class:`ClientGroup` is a plain callable class over one shard: ``fit`` trains the sampled
clients of the shard from the round's global weights (vectorised over clients) and, when asked,
first evaluates those weights on every client's holdout. Ray runs it unchanged as an actor
(:mod:`raypipe.engine.federation`); unit tests call it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raypipe.federated.models import (
    LocalTrainSpec,
    client_order,
    predict_proba,
    train_clients,
    with_padding_row,
)
from raypipe.federated.privacy.homomorphic import EncryptedVector, encrypt
from raypipe.federated.privacy.secagg import KeyAdvert
from raypipe.federated.secure_clients import SecAggHost, SecureFit, contribution
from raypipe.federated.xgb_clients import XgbTrainSpec, array_to_model, boost, predict_model

__all__ = [
    "ClientEval",
    "ClientGroup",
    "ClientShard",
    "FailureInjection",
    "FitReply",
    "FitRequest",
    "build_shards",
    "predict_global",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientShard:
    """Rows of several clients, concatenated: client ``i`` owns ``x[offsets[i]:offsets[i+1]]``."""

    client_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    holdout_offsets: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def build_shards(
    x: np.ndarray,
    y: np.ndarray,
    partitions: Sequence[np.ndarray],
    n_shards: int,
    *,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> list[ClientShard]:
    """Cut client partitions (row positions into ``x``) into ``n_shards`` shards of clients.

    Clients are dealt round-robin by descending size so shards get similar work; each client's
    rows are split into train and holdout (``holdout_fraction``, at least one train row).
    """
    rng = np.random.default_rng(seed)
    n_shards = max(1, min(n_shards, len(partitions)))
    by_size = np.argsort([-len(p) for p in partitions], kind="stable")
    members: list[list[int]] = [[] for _ in range(n_shards)]
    for rank, client in enumerate(by_size):
        members[rank % n_shards].append(int(client))
    shards = []
    for ids in members:
        ids.sort()
        train, hold = [], []
        for c in ids:
            rows = rng.permutation(partitions[c])
            n_hold = min(round(len(rows) * holdout_fraction), max(len(rows) - 1, 0))
            hold.append(np.sort(rows[:n_hold]))
            train.append(np.sort(rows[n_hold:]))
        shards.append(
            ClientShard(
                client_ids=np.array(ids, dtype=np.int64),
                x=np.ascontiguousarray(x[np.concatenate(train)]),
                y=y[np.concatenate(train)].astype(np.float64),
                offsets=np.concatenate([[0], np.cumsum([len(t) for t in train])]),
                x_holdout=np.ascontiguousarray(x[np.concatenate(hold)]),
                y_holdout=y[np.concatenate(hold)].astype(np.float64),
                holdout_offsets=np.concatenate([[0], np.cumsum([len(h) for h in hold])]),
            )
        )
    return shards


@dataclass(frozen=True)
class FailureInjection:
    """Deterministic client failures for tests and drills.

    ``crash`` lists ``(round, client_id)`` pairs whose client raises; ``crash_rate`` makes each
    client crash with that probability per round; ``hang`` maps a round to seconds a group sleeps
    (its answer then misses the round's deadline); ``kill`` lists rounds in which the hosting
    worker process exits (honoured by the Ray actor only).
    """

    crash: frozenset[tuple[int, int]] = frozenset()
    crash_rate: float = 0.0
    hang: tuple[tuple[int, float], ...] = ()
    kill: tuple[int, ...] = ()
    shard: int | None = None  # hang/kill only this shard (None: every shard)
    seed: int = 0

    def crashes(self, round_: int, client_id: int) -> bool:
        if (round_, client_id) in self.crash:
            return True
        if self.crash_rate > 0:
            u = np.random.default_rng([self.seed, round_, client_id, 7]).random()
            return bool(u < self.crash_rate)
        return False

    def hang_seconds(self, round_: int, shard: int) -> float:
        if self.shard is not None and shard != self.shard:
            return 0.0
        return dict(self.hang).get(round_, 0.0)

    def kills(self, round_: int, shard: int) -> bool:
        return (self.shard is None or shard == self.shard) and round_ in self.kill


@dataclass(frozen=True)
class FitRequest:
    """One round's work for a group: train ``client_ids`` from ``weights``."""

    round: int
    weights: np.ndarray
    client_ids: np.ndarray
    spec: LocalTrainSpec | XgbTrainSpec
    seed: int = 0
    evaluate: bool = False
    secure: SecureFit | None = None  # secure aggregation: keep the parameters, mask them later


@dataclass(frozen=True)
class ClientEval:
    """Metrics of one weight vector on clients' holdouts (one entry per client)."""

    client_ids: np.ndarray
    num_examples: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    auc: np.ndarray  # NaN where a holdout has one class


@dataclass(frozen=True)
class FitReply:
    """What a group answers: trained parameters of the clients that succeeded, and failures.

    XGBoost clients answer with booster bytes in ``models``, and clients in a secure round keep
    their parameters for the protocol; ``params`` then has no columns.
    """

    client_ids: np.ndarray
    params: np.ndarray
    num_examples: np.ndarray
    losses: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    evaluation: ClientEval | None = None
    seconds: float = 0.0
    models: tuple[bytes, ...] = ()
    encrypted: tuple[EncryptedVector, ...] = ()  # homomorphic: one per answering client
    adverts: tuple[KeyAdvert, ...] = ()  # secure aggregation: each answering client's public keys


def predict_global(
    spec: LocalTrainSpec | XgbTrainSpec, weights: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Probabilities of the global model (numpy weights, or booster bytes as ``uint8``)."""
    if isinstance(spec, XgbTrainSpec):
        return predict_model(array_to_model(weights), x)
    return predict_proba(spec, weights, x)


class ClientGroup:
    """The clients of one shard; call :meth:`fit` once per round.

    Parameters
    ----------
    shard
        The clients' rows, held for the life of the group.
    failures
        Injected failures (tests, drills).
    shard_index
        This group's number, for failure injection.
    """

    def __init__(
        self, shard: ClientShard, failures: FailureInjection | None = None, shard_index: int = 0
    ) -> None:
        self.shard = shard
        self.failures = failures or FailureInjection()
        self.shard_index = shard_index
        self._position = {int(c): i for i, c in enumerate(shard.client_ids)}
        self._x, self._y = with_padding_row(shard.x, shard.y)  # once, not per round
        self._dtrain: dict[int, Any] = {}  # XGBoost clients' DMatrix, built on first use
        self.secagg = SecAggHost()  # each client's SecAgg+ secrets live here, per client

    def __call__(self, request: FitRequest) -> FitReply:
        return self.fit(request)

    def fit(self, request: FitRequest) -> FitReply:
        started = time.perf_counter()
        evaluation = self.evaluate(request.spec, request.weights) if request.evaluate else None
        hang = self.failures.hang_seconds(request.round, self.shard_index)
        if hang:
            time.sleep(hang)
        failed: dict[int, str] = {}
        ok: list[int] = []
        # the request may name every sampled client of the round: keep the ones hosted here
        for cid in (int(c) for c in request.client_ids if int(c) in self._position):
            if self.failures.crashes(request.round, cid):
                failed[cid] = "client crashed (injected)"
            else:
                ok.append(cid)
        if isinstance(request.spec, XgbTrainSpec):
            return self._fit_xgb(request, ok, failed, evaluation, started)
        shard = self.shard
        positions = [self._position[c] for c in ok]
        orders = [
            client_order(int(shard.sizes[i]), request.spec.epochs, (request.seed, request.round, c))
            for i, c in zip(positions, ok, strict=False)
        ]
        try:
            trained = train_clients(
                request.spec,
                request.weights,
                self._x,
                self._y,
                orders,
                [int(shard.offsets[i]) for i in positions],
            )
        except (FloatingPointError, ValueError) as exc:  # a bad client state fails its clients
            logger.warning("local training failed in shard %d: %s", self.shard_index, exc)
            failed.update({c: f"local training failed: {exc}" for c in ok})
            ok = []
            trained = None
        params = trained.params if trained else np.empty((0, request.weights.shape[0]))
        encrypted: tuple[EncryptedVector, ...] = ()
        adverts: tuple[KeyAdvert, ...] = ()
        secure = request.secure
        if secure is not None and trained is not None:
            vectors = [
                contribution(params[row], request.weights, int(trained.num_examples[row]), secure)
                for row in range(len(ok))
            ]
            if secure.he_public is not None:  # only ciphertexts leave
                encrypted = tuple(encrypt(secure.he_public, v, secure.he_slots) for v in vectors)
            else:  # the update stays here; only its masked form leaves, later
                adverts = tuple(
                    self.secagg.hold(cid, vector) for cid, vector in zip(ok, vectors, strict=True)
                )
            params = np.empty((len(ok), 0))
        return FitReply(
            client_ids=np.array(ok, dtype=np.int64),
            params=params,
            num_examples=trained.num_examples if trained else np.empty(0, np.int64),
            losses=trained.losses if trained else np.empty(0),
            failed=failed,
            evaluation=evaluation,
            seconds=time.perf_counter() - started,
            encrypted=encrypted,
            adverts=adverts,
        )

    def _fit_xgb(
        self,
        request: FitRequest,
        ok: list[int],
        failed: dict[int, str],
        evaluation: ClientEval | None,
        started: float,
    ) -> FitReply:
        """Each client boosts on its own rows from the global booster (one thread)."""
        import xgboost as xgb

        spec = request.spec
        assert isinstance(spec, XgbTrainSpec)
        model, params = array_to_model(request.weights), spec.booster_params()
        answered, models, sizes, losses = [], [], [], []
        for cid in ok:
            i = self._position[cid]
            lo, hi = int(self.shard.offsets[i]), int(self.shard.offsets[i + 1])
            try:
                if cid not in self._dtrain:
                    self._dtrain[cid] = xgb.DMatrix(
                        self.shard.x[lo:hi], label=self.shard.y[lo:hi], nthread=1
                    )
                trees, loss = boost(
                    model,
                    self._dtrain[cid],
                    params,
                    spec.num_local_round,
                    new_trees_only=spec.new_trees_only,
                )
            except xgb.core.XGBoostError as exc:  # a bad client fails alone
                logger.warning("client %d failed to boost: %s", cid, exc)
                failed[cid] = f"local boosting failed: {exc}"
                continue
            answered.append(cid)
            models.append(trees)
            sizes.append(hi - lo)
            losses.append(loss)
        return FitReply(
            client_ids=np.array(answered, dtype=np.int64),
            params=np.empty((len(answered), 0)),
            num_examples=np.array(sizes, dtype=np.int64),
            losses=np.array(losses, dtype=np.float64),
            failed=failed,
            evaluation=evaluation,
            seconds=time.perf_counter() - started,
            models=tuple(models),
        )

    def secagg_step(self, name: str, payload: Any) -> dict[int, Any]:
        """One SecAgg+ step for this group's clients (see :class:`SecAggHost`)."""
        return self.secagg.step(name, payload)

    def evaluate(self, spec: LocalTrainSpec | XgbTrainSpec, weights: np.ndarray) -> ClientEval:
        """Loss, accuracy and AUC of ``weights`` on every client's holdout."""
        shard = self.shard
        prob = (
            predict_global(spec, weights, shard.x_holdout) if len(shard.y_holdout) else np.empty(0)
        )
        k = len(shard.client_ids)
        loss, acc, auc = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
        bounds = shard.holdout_offsets
        for i in range(k):
            p, y = prob[bounds[i] : bounds[i + 1]], shard.y_holdout[bounds[i] : bounds[i + 1]]
            if len(y):
                loss[i], acc[i], auc[i] = binary_scores(y, p)
        return ClientEval(shard.client_ids, np.diff(bounds), loss, acc, auc)


def binary_scores(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Log-loss, accuracy at 0.5 and ROC AUC (NaN with one class) of probabilities ``p``."""
    eps = 1e-12
    pc = np.clip(p, eps, 1 - eps)
    loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    acc = float(np.mean((p >= 0.5) == (y > 0.5)))
    return loss, acc, roc_auc(y, p)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks); NaN when one class is absent."""
    pos = y > 0.5
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    # average ranks over ties: each run of equal values gets the mean of its positions
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(p))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
