"""Numpy models of federated clients: logistic regression and a one-hidden-layer MLP.

Parameters live in one flat float64 vector per client, so a round moves one array and strategies
aggregate rows of a matrix. Local training is mini-batch SGD (optionally with FedProx's proximal
term ``mu/2 * ||w - w_global||^2``) and is *vectorised over clients*: the clients of a group are
trained together, step by step, on ``(clients, batch, features)`` blocks, with a mask for batches
that a smaller client does not have. The arithmetic per client is exactly that of the plain loop
(:func:`train_one_reference`), which the tests use as the oracle; only the Python overhead is
shared, which is what dominates small federated workloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "LocalTrainSpec",
    "TrainedClients",
    "init_params",
    "n_params",
    "predict_proba",
    "train_clients",
    "train_one_reference",
    "with_padding_row",
]

ModelKind = Literal["logistic", "mlp"]


@dataclass(frozen=True)
class LocalTrainSpec:
    """How a client trains locally.

    Parameters
    ----------
    model
        ``"logistic"`` (logistic regression) or ``"mlp"`` (one tanh hidden layer).
    hidden
        Hidden units of the MLP.
    epochs, batch_size, learning_rate
        Mini-batch SGD; each epoch visits the client's rows in a fresh order.
    proximal_mu
        FedProx's ``mu``; 0 is plain SGD.
    """

    model: ModelKind = "logistic"
    hidden: int = 16
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.1
    proximal_mu: float = 0.0


@dataclass(frozen=True)
class TrainedClients:
    """Result of local training of several clients: one row per client."""

    params: np.ndarray  # (clients, P)
    losses: np.ndarray  # (clients,) mean training log-loss over the local steps
    num_examples: np.ndarray  # (clients,)


def n_params(spec: LocalTrainSpec, n_features: int) -> int:
    """Length of the flat parameter vector."""
    if spec.model == "logistic":
        return n_features + 1
    return n_features * spec.hidden + 2 * spec.hidden + 1


def init_params(spec: LocalTrainSpec, n_features: int, seed: int = 0) -> np.ndarray:
    """Initial global parameters: zeros for logistic regression, small random for the MLP."""
    if spec.model == "logistic":
        return np.zeros(n_features + 1)
    rng = np.random.default_rng(seed)
    h = spec.hidden
    w1 = rng.normal(0.0, 1.0 / np.sqrt(n_features), size=n_features * h)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(h), size=h)
    return np.concatenate([w1, np.zeros(h), w2, [0.0]])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _unpack_mlp(params: np.ndarray, d: int, h: int) -> tuple[np.ndarray, ...]:
    c = params.shape[0]
    w1 = params[:, : d * h].reshape(c, d, h)
    b1 = params[:, d * h : d * h + h]
    w2 = params[:, d * h + h : d * h + 2 * h]
    b2 = params[:, -1]
    return w1, b1, w2, b2


def _logits(spec: LocalTrainSpec, params: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, object]:
    """Logits (C, B) of ``x`` (C, B, d) under ``params`` (C, P), and what backprop needs."""
    d = x.shape[2]
    if spec.model == "logistic":
        z = np.matmul(x, params[:, :d, None])[..., 0] + params[:, d, None]
        return z, None
    w1, b1, w2, b2 = _unpack_mlp(params, d, spec.hidden)
    hidden = np.tanh(np.matmul(x, w1) + b1[:, None, :])
    z = np.matmul(hidden, w2[:, :, None])[..., 0] + b2[:, None]
    return z, hidden


def _grad(
    spec: LocalTrainSpec, params: np.ndarray, x: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-client summed log-loss (C,) and mean gradient (C, P) over the masked rows."""
    z, hidden = _logits(spec, params, x)
    p = _sigmoid(z)
    count = np.maximum(mask.sum(axis=1), 1.0)
    r = (p - y) * mask / count[:, None]  # d(mean loss)/dz
    # log-loss from logits, stable: softplus(z) - y*z
    loss = ((np.logaddexp(0.0, z) - y * z) * mask).sum(axis=1)
    d = x.shape[2]
    grad = np.empty_like(params)
    xt = np.swapaxes(x, 1, 2)
    if spec.model == "logistic":
        grad[:, :d] = np.matmul(xt, r[:, :, None])[..., 0]
        grad[:, d] = r.sum(axis=1)
        return loss, grad
    h = spec.hidden
    _, _, w2, _ = _unpack_mlp(params, d, h)
    assert isinstance(hidden, np.ndarray)
    grad[:, d * h + h : d * h + 2 * h] = np.matmul(np.swapaxes(hidden, 1, 2), r[:, :, None])[..., 0]
    grad[:, -1] = r.sum(axis=1)
    dh = r[:, :, None] * w2[:, None, :] * (1.0 - hidden * hidden)
    grad[:, : d * h] = np.matmul(xt, dh).reshape(params.shape[0], d * h)
    grad[:, d * h : d * h + h] = dh.sum(axis=1)
    return loss, grad


def predict_proba(spec: LocalTrainSpec, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class for rows ``x`` (n, d) under one parameter vector."""
    z, _ = _logits(spec, params[None, :], x[None, :, :])
    return _sigmoid(z[0])


def client_order(n: int, epochs: int, seed: tuple[int, ...]) -> np.ndarray:
    """The order in which a client visits its rows: one permutation per epoch, concatenated."""
    rng = np.random.default_rng(list(seed))
    return np.concatenate([rng.permutation(n) for _ in range(epochs)]) if n else np.empty(0, int)


def _batch_index(n: int, spec: LocalTrainSpec, order: np.ndarray, pad: int) -> np.ndarray:
    """Row indices per step (steps, batch), epochs' last partial batches padded with ``pad``."""
    b = spec.batch_size
    per_epoch = -(-n // b)
    out = np.full((spec.epochs * per_epoch, b), pad, dtype=np.int64)
    for e in range(spec.epochs):
        chunk = order[e * n : (e + 1) * n]
        block = np.full(per_epoch * b, pad, dtype=np.int64)
        block[:n] = chunk
        out[e * per_epoch : (e + 1) * per_epoch] = block.reshape(per_epoch, b)
    return out


def train_clients(
    spec: LocalTrainSpec,
    global_params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    orders: list[np.ndarray],
    offsets: list[int],
    *,
    max_padding: float = 2.0,
) -> TrainedClients:
    """Train several clients from ``global_params``, vectorised over clients.

    Parameters
    ----------
    x, y
        Rows of all clients of the group, concatenated (``x`` (N, d), ``y`` (N,)).
    orders
        Per client, the order of its local row positions (from :func:`client_order`).
    offsets
        Per client, the position of its first row in ``x``.
    max_padding
        Clients are bucketed by number of steps so padded work stays under this factor.
    """
    k = len(orders)
    n_rows = np.array([len(o) // spec.epochs if spec.epochs else 0 for o in orders])
    p = global_params.shape[0]
    params_out = np.tile(global_params, (k, 1))
    losses = np.zeros(k)
    pad = x.shape[0] - 1
    steps = np.array([spec.epochs * -(-int(n) // spec.batch_size) for n in n_rows])
    for bucket in _buckets(steps, max_padding):
        index = np.full((len(bucket), int(steps[bucket[0]]), spec.batch_size), pad, np.int64)
        for row, c in enumerate(bucket):
            if n_rows[c]:
                local = _batch_index(int(n_rows[c]), spec, orders[c], -1)
                glob = np.where(local >= 0, local + offsets[c], pad)
                index[row, : glob.shape[0]] = glob
        w = np.tile(global_params, (len(bucket), 1))
        total = np.zeros(len(bucket))
        for t in range(index.shape[1]):
            idx = index[:, t]
            mask = (idx != pad).astype(np.float64)
            active = mask.any(axis=1)
            loss, grad = _grad(spec, w, x[idx], y[idx], mask)
            if spec.proximal_mu:
                grad += spec.proximal_mu * (w - global_params)
            w -= spec.learning_rate * grad * active[:, None]
            total += loss
        params_out[bucket] = w
        losses[bucket] = total / np.maximum(n_rows[bucket] * spec.epochs, 1)
    assert params_out.shape == (k, p)
    return TrainedClients(params=params_out, losses=losses, num_examples=n_rows.astype(np.int64))


def with_padding_row(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` with the zero row :func:`train_clients` uses for padding appended."""
    return np.vstack([x, np.zeros((1, x.shape[1]))]), np.append(y, 0.0).astype(np.float64)


def _buckets(steps: np.ndarray, max_padding: float) -> list[np.ndarray]:
    """Group clients (by descending steps) so that padded steps <= max_padding x real steps."""
    order = np.argsort(-steps, kind="stable")
    buckets: list[list[int]] = []
    current: list[int] = []
    real = 0
    for c in order:
        s = int(steps[c])
        if current and (len(current) + 1) * int(steps[current[0]]) > max_padding * (real + s):
            buckets.append(current)
            current, real = [], 0
        current.append(int(c))
        real += s
    if current:
        buckets.append(current)
    return [np.array(b, dtype=np.int64) for b in buckets]


def train_one_reference(
    spec: LocalTrainSpec,
    global_params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
) -> np.ndarray:
    """The plain per-client SGD loop (one client, one batch at a time): the tests' oracle."""
    w = global_params.copy()[None, :]
    b = spec.batch_size
    n = x.shape[0]
    for e in range(spec.epochs):
        chunk = order[e * n : (e + 1) * n]
        for start in range(0, n, b):
            rows = chunk[start : start + b]
            mask = np.ones((1, len(rows)))
            _, grad = _grad(spec, w, x[rows][None], y[rows][None], mask)
            if spec.proximal_mu:
                grad += spec.proximal_mu * (w - global_params)
            w = w - spec.learning_rate * grad
    trained: np.ndarray = w[0]
    return trained
