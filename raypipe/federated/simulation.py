"""The server loop of a federated simulation, and the in-process client backend.

:func:`run_federation` drives any :class:`ClientBackend`: each round it samples clients, sends
the global weights (one array) to the groups hosting them, keeps the answers that arrived in time,
retries the round when fewer than ``min_fit_clients`` answered (then stops with a clear error),
aggregates with the strategy (through SecAgg+ between the clients and this server when asked:
the clients keep their parameters and only the sum is unmasked), and evaluates the
new global model on the central test set. Clients' holdout metrics of round ``r``'s model come
back with round ``r + 1``'s answers (the groups evaluate the weights they receive before
training), so evaluation costs no extra round trip; the last round's are fetched at the end.
Federated XGBoost runs through the same loop: the global "weights" are the booster's JSON bytes as
a ``uint8`` array, clients answer with booster bytes, and the strategy edits the booster.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from raypipe import collector
from raypipe.errors import SpecError, StageError
from raypipe.federated.clients import (
    ClientEval,
    ClientGroup,
    FitReply,
    FitRequest,
    binary_scores,
    predict_global,
)
from raypipe.federated.models import LocalTrainSpec
from raypipe.federated.privacy.dp import DPFixedClipping
from raypipe.federated.privacy.homomorphic import (
    EncryptedVector,
    HeAggregator,
    HeConfig,
    HeKeyHolder,
)
from raypipe.federated.privacy.secagg import SecAggConfig
from raypipe.federated.secure_clients import SecureFit
from raypipe.federated.secure_rounds import aggregate_sum, secure_aggregate
from raypipe.federated.strategies.base import ClientUpdates, Strategy
from raypipe.federated.strategies.xgb_bagging import XgbUpdates
from raypipe.federated.xgb_clients import XgbTrainSpec, array_to_model, model_to_array

__all__ = [
    "ClientBackend",
    "FederatedResult",
    "FederationSpec",
    "InlineFederation",
    "RoundRecord",
    "run_federation",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FederationSpec:
    """How the simulation runs.

    Parameters
    ----------
    rounds
        Server rounds.
    local
        Clients' local training: a numpy model, or XGBoost (then the weights are the booster's
        JSON bytes as a ``uint8`` array and the strategy is ``xgb_bagging`` or ``xgb_cyclic``).
    round_timeout_s
        Answers later than this are left out of the round (``None``: wait).
    round_retries
        Times a round is retried (new sample) when fewer than ``min_fit_clients`` answered.
    evaluate_clients
        Evaluate every round's model on every client's holdout.
    secure_aggregation
        Aggregate through the SecAgg+ protocol (mean strategies only); under DP each client clips
        its own delta before masking.
    secagg_max_weight
        SecAgg+ caps a client's weight at this many examples (Flower's ``max_weight``).
    secagg_dropout
        Fraction of answering clients that drop after sharing their keys, before their masked
        upload (a drill of SecAgg+'s dropout recovery).
    homomorphic
        Clients encrypt their contribution with CKKS, the server sums ciphertexts and a separate
        key holder decrypts the sum only (mean strategies only; ``secagg_max_weight`` caps the
        example weights as with secure aggregation).
    """

    rounds: int = 10
    local: LocalTrainSpec | XgbTrainSpec = field(default_factory=LocalTrainSpec)
    round_timeout_s: float | None = None
    round_retries: int = 1
    evaluate_clients: bool = True
    secure_aggregation: SecAggConfig | None = None
    secagg_max_weight: float = 1000.0
    secagg_dropout: float = 0.0
    homomorphic: HeConfig | None = None
    seed: int = 0


@dataclass
class RoundRecord:
    """What happened in one round; client metrics are those of this round's aggregate."""

    round: int
    sampled: int
    answered: int
    failed: dict[int, str]
    attempts: int
    train_loss: float
    seconds: float
    test: dict[str, float] = field(default_factory=dict)
    clients: dict[str, float] = field(default_factory=dict)
    client_auc: dict[int, float] = field(default_factory=dict)
    epsilon: float | None = None
    # SecAgg+ messages up and down, or the CKKS ciphertext up, per client (mean)
    privacy_bytes_per_client: float | None = None

    def metrics(self) -> dict[str, float]:
        """Flat metric names for tracking."""
        out = {
            "train_loss": self.train_loss,
            "clients_answered": float(self.answered),
            "clients_failed": float(len(self.failed)),
            "round_seconds": self.seconds,
        }
        out.update({f"test_{k}": v for k, v in self.test.items()})
        out.update({f"clients_{k}": v for k, v in self.clients.items()})
        if self.epsilon is not None:
            out["epsilon"] = self.epsilon
        if self.privacy_bytes_per_client is not None:
            out["privacy_bytes_per_client"] = self.privacy_bytes_per_client
        return out


@dataclass(frozen=True)
class FederatedResult:
    """Final global model and the per-round history."""

    weights: np.ndarray
    history: list[RoundRecord]
    seconds: float

    @property
    def model_bytes(self) -> bytes:
        """The final booster's JSON bytes (federated XGBoost)."""
        return array_to_model(self.weights)

    @property
    def final_test(self) -> dict[str, float]:
        return self.history[-1].test if self.history else {}

    def steady_rounds_per_s(self, skip: int = 1) -> float:
        """Rounds per second after the first ``skip`` rounds (start-up excluded)."""
        tail = [r.seconds for r in self.history[skip:]]
        return len(tail) / sum(tail) if tail and sum(tail) > 0 else float("nan")


class ClientBackend(Protocol):
    """Where clients live: in this process (:class:`InlineFederation`) or in Ray actors."""

    @property
    def client_ids(self) -> np.ndarray: ...

    def fit_round(self, request: FitRequest, timeout_s: float | None) -> list[FitReply]: ...

    def evaluate(
        self, spec: LocalTrainSpec | XgbTrainSpec, weights: np.ndarray
    ) -> list[ClientEval]: ...

    def secagg_step(self, name: str, payload: Any, timeout_s: float | None) -> dict[int, Any]: ...

    def close(self) -> None: ...


class InlineFederation:
    """Client groups called one after another in this process (unit tests, tiny runs).

    A group's answer that took longer than the round's timeout is discarded, which is what a
    deadline does to a late client.
    """

    def __init__(self, groups: Sequence[ClientGroup]) -> None:
        self.groups = list(groups)
        self._ids = np.sort(np.concatenate([g.shard.client_ids for g in self.groups]))

    @property
    def client_ids(self) -> np.ndarray:
        return self._ids

    def fit_round(self, request: FitRequest, timeout_s: float | None) -> list[FitReply]:
        replies = []
        for group in self.groups:
            mine = np.intersect1d(request.client_ids, group.shard.client_ids)
            if not len(mine) and not request.evaluate:
                continue
            sub = dataclasses.replace(request, client_ids=mine)
            started = time.perf_counter()
            try:
                reply = group.fit(sub)
            except Exception as exc:
                replies.append(failed_reply(mine, f"group crashed: {exc!r}", request))
                continue
            if timeout_s is not None and time.perf_counter() - started > timeout_s:
                replies.append(failed_reply(mine, f"timed out after {timeout_s} s", request))
                continue
            replies.append(reply)
        return replies

    def evaluate(
        self, spec: LocalTrainSpec | XgbTrainSpec, weights: np.ndarray
    ) -> list[ClientEval]:
        return [g.evaluate(spec, weights) for g in self.groups]

    def secagg_step(self, name: str, payload: Any, timeout_s: float | None) -> dict[int, Any]:
        answers: dict[int, Any] = {}
        for group in self.groups:
            try:
                answers.update(group.secagg_step(name, payload))
            except Exception as exc:  # a failing group's clients drop out of the protocol
                logger.warning("secure aggregation step %s failed in a group: %r", name, exc)
        return answers

    def close(self) -> None:
        return None


def failed_reply(client_ids: np.ndarray, reason: str, request: FitRequest) -> FitReply:
    """The reply standing for a group that did not answer: all its clients failed."""
    secure_or_boosted = request.secure is not None or isinstance(request.spec, XgbTrainSpec)
    p = 0 if secure_or_boosted else request.weights.shape[0]
    return FitReply(
        client_ids=np.empty(0, np.int64),
        params=np.empty((0, p)),
        num_examples=np.empty(0, np.int64),
        losses=np.empty(0),
        failed={int(c): reason for c in client_ids},
    )


def _merge(
    replies: list[FitReply],
) -> tuple[
    ClientUpdates, tuple[bytes, ...], tuple[EncryptedVector, ...], dict[int, str], list[ClientEval]
]:
    answered = [r for r in replies if len(r.client_ids)]
    models = tuple(m for r in answered for m in r.models)
    encrypted = tuple(e for r in answered for e in r.encrypted)
    p = replies[0].params.shape[1] if replies else 0
    updates = ClientUpdates(
        client_ids=np.concatenate([r.client_ids for r in answered]) if answered else np.empty(0),
        params=np.vstack([r.params for r in answered]) if answered else np.empty((0, p)),
        num_examples=np.concatenate([r.num_examples for r in answered])
        if answered
        else np.empty(0),
        losses=np.concatenate([r.losses for r in answered]) if answered else np.empty(0),
    )
    failed: dict[int, str] = {}
    for r in replies:
        failed.update(r.failed)
    evals = [r.evaluation for r in replies if r.evaluation is not None]
    return updates, models, encrypted, failed, evals


def summarize_clients(evals: list[ClientEval]) -> tuple[dict[str, float], dict[int, float]]:
    """Holdout metrics weighted by holdout size (AUC over clients that have both classes)."""
    if not evals:
        return {}, {}
    n = np.concatenate([e.num_examples for e in evals]).astype(np.float64)
    out = {}
    for name in ("loss", "accuracy", "auc"):
        v = np.concatenate([getattr(e, name) for e in evals])
        ok = ~np.isnan(v) & (n > 0)
        out[name] = float(np.average(v[ok], weights=n[ok])) if ok.any() else float("nan")
        if name == "auc" and ok.any():
            out["auc_min"] = float(v[ok].min())
    per_client = {
        int(c): float(a)
        for e in evals
        for c, a in zip(e.client_ids, e.auc, strict=False)
        if not np.isnan(a)
    }
    return out, per_client


def evaluate_central(
    spec: LocalTrainSpec | XgbTrainSpec,
    weights: np.ndarray,
    test: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, float]:
    """Loss, accuracy and AUC of ``weights`` on the central test set."""
    if test is None or not len(test[1]):
        return {}
    loss, acc, auc = binary_scores(test[1], predict_global(spec, weights, test[0]))
    return {"loss": loss, "accuracy": acc, "auc": auc}


def run_federation(
    backend: ClientBackend,
    strategy: Strategy[Any, Any],
    spec: FederationSpec,
    initial_weights: np.ndarray,
    *,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    on_round: Callable[[RoundRecord], Any] | None = None,
) -> FederatedResult:
    """Run ``spec.rounds`` rounds of federated training; see the module docstring.

    For federated XGBoost pass an empty ``uint8`` array (or a booster's bytes, see
    :func:`~raypipe.federated.xgb_clients.model_to_array`) as ``initial_weights``.
    """
    protected = spec.secure_aggregation is not None or spec.homomorphic is not None
    if protected and not strategy.is_mean:
        raise SpecError(
            [f"secure and homomorphic aggregation need a mean strategy, not `{strategy.name}`"]
        )
    if spec.secure_aggregation is not None and spec.homomorphic is not None:
        raise SpecError(
            ["`secure_aggregation` and `homomorphic` both hide single updates: choose one"],
            hint="keep `secure_aggregation` (no key holder) or `homomorphic` (fewer messages)",
        )
    boosted = isinstance(spec.local, XgbTrainSpec)
    if boosted != str(getattr(strategy, "name", "")).startswith("xgb_"):
        raise SpecError(
            [f"strategy `{strategy.name}` does not fit the clients' model `{_model_name(spec)}`"],
            hint="XGBoost clients need `xgb_bagging` or `xgb_cyclic`, and only they do",
        )
    rng = np.random.default_rng([0x5A, spec.seed])
    weights = np.asarray(initial_weights, dtype=np.uint8 if boosted else np.float64)
    available = backend.client_ids
    key_holder = HeKeyHolder(spec.homomorphic) if spec.homomorphic and not boosted else None
    secure = _secure_fit(spec, strategy, boosted, key_holder)
    history: list[RoundRecord] = []
    started = time.perf_counter()
    # the rounds' messages stay alive until each ends: the older heap out of their collections
    with collector.frozen():
        for round_ in range(1, spec.rounds + 1):
            round_started = time.perf_counter()
            local = dataclasses.replace(
                spec.local, **_local_overrides(strategy.client_config(round_), spec.local)
            )
            for attempt in range(1, spec.round_retries + 2):
                sampled = strategy.sample(round_, available, rng)
                request = FitRequest(
                    round=round_,
                    weights=weights,
                    client_ids=sampled,
                    spec=local,
                    seed=spec.seed,
                    evaluate=spec.evaluate_clients and bool(history),
                    secure=secure,
                )
                replies = backend.fit_round(request, spec.round_timeout_s)
                updates, models, encrypted, failed, evals = _merge(replies)
                if history and evals:
                    history[-1].clients, history[-1].client_auc = summarize_clients(evals)
                if len(updates) >= strategy.min_fit_clients:
                    break
                logger.warning(
                    "round %d attempt %d: %d of %d sampled clients answered, %d needed",
                    round_,
                    attempt,
                    len(updates),
                    len(sampled),
                    strategy.min_fit_clients,
                )
            else:
                reasons = sorted(set(failed.values()))[:3]
                raise StageError(
                    f"federated round {round_}: only {len(updates)} of {len(sampled)} sampled "
                    f"clients answered after {spec.round_retries + 1} attempts, "
                    f"`min_fit_clients` is {strategy.min_fit_clients}; failures: {reasons}",
                    hint="raise `round_timeout_s` or `round_retries`, lower `min_fit_clients`, or "
                    "look at the failing clients' errors",
                )
            train_loss = float(
                np.average(updates.losses, weights=np.maximum(updates.num_examples, 1))
            )
            aggregated, traffic = len(updates), None
            if boosted:
                answers = XgbUpdates(updates.client_ids, models, updates.num_examples)
                global_model = strategy.aggregate(round_, array_to_model(weights), answers)
                weights = model_to_array(global_model)
            elif key_holder is not None:
                # the aggregator sums ciphertexts; the key holder decrypts the sum only
                total, count = HeAggregator(key_holder.public).total(encrypted)
                aggregated = count
                weights = aggregate_sum(
                    strategy, round_, weights, key_holder.decrypt(total), count, updates
                )
                # the public context (about 230 KB) reaches each client once per run: not counted
                traffic = sum(e.nbytes for e in encrypted) / max(count, 1)
            elif secure is not None:
                assert spec.secure_aggregation is not None
                drop_rng = np.random.default_rng([spec.seed, round_, 0xD0])  # simulated dropouts
                gone = updates.client_ids[drop_rng.random(len(updates)) < spec.secagg_dropout]
                weights, secure_round = secure_aggregate(
                    lambda name, payload: backend.secagg_step(name, payload, spec.round_timeout_s),
                    strategy,
                    spec.secure_aggregation,
                    round_,
                    weights,
                    updates,
                    [a for r in replies for a in r.adverts],  # the answering clients' public keys
                    frozenset(int(c) for c in gone),
                )
                aggregated = len(secure_round.result.included)
                traffic = secure_round.bytes_per_client
            else:
                weights = strategy.aggregate(round_, weights, updates)
            record = RoundRecord(
                round=round_,
                sampled=len(sampled),
                answered=aggregated,
                failed=failed,
                attempts=attempt,
                train_loss=train_loss,
                seconds=0.0,
                test=evaluate_central(local, weights, test),
                epsilon=getattr(strategy, "epsilon_", None),
                privacy_bytes_per_client=traffic,
            )
            record.seconds = time.perf_counter() - round_started
            history.append(record)
            if on_round is not None and (history[:-1]):
                on_round(history[-2])
    if spec.evaluate_clients and history:
        history[-1].clients, history[-1].client_auc = summarize_clients(
            backend.evaluate(spec.local, weights)
        )
    if on_round is not None and history:
        on_round(history[-1])
    return FederatedResult(weights=weights, history=history, seconds=time.perf_counter() - started)


def _secure_fit(
    spec: FederationSpec,
    strategy: Strategy[Any, Any],
    boosted: bool,
    key_holder: HeKeyHolder | None,
) -> SecureFit | None:
    """What clients need for secure or homomorphic aggregation (None: plain round)."""
    if (spec.secure_aggregation is None and key_holder is None) or boosted:
        return None
    he = {}
    if key_holder is not None:
        he = {"he_public": key_holder.public, "he_slots": key_holder.config.slots}
    if isinstance(strategy, DPFixedClipping):
        # the server cannot see who was clipped when it only sees the sum
        strategy.clipped_fraction_ = float("nan")
        return SecureFit(spec.secagg_max_weight, strategy.clipping_norm, **he)
    return SecureFit(spec.secagg_max_weight, **he)


def _local_overrides(config: dict[str, Any], spec: Any) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(spec)}
    return {k: v for k, v in config.items() if k in fields}


def _model_name(spec: FederationSpec) -> str:
    return "xgboost" if isinstance(spec.local, XgbTrainSpec) else spec.local.model
