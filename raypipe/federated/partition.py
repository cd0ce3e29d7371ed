"""Splitting rows among simulated clients: by a natural column, IID, or Dirichlet over the label.

Each function returns one array of row positions per client, sorted, disjoint, and covering the
rows (the Dirichlet split keeps Flower Datasets' semantics: per class, proportions drawn from
``Dirichlet(alpha)`` and redrawn until every client has ``min_partition_size`` rows).
"""

from __future__ import annotations

import itertools

import numpy as np

from raypipe.errors import DataError, SpecError

__all__ = ["partition_by_column", "partition_dirichlet", "partition_iid"]

DIRICHLET_MAX_TRIES = 100


def partition_by_column(values: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """One client per distinct value of a column (e.g. country, platform, studio).

    Returns the client names (sorted distinct values, nulls as ``"<null>"``) and their rows.
    """
    keys = np.array(["<null>" if v is None else str(v) for v in values], dtype=object)
    names, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(names) + 1))
    return [str(n) for n in names], [np.sort(order[a:b]) for a, b in itertools.pairwise(bounds)]


def partition_iid(n_rows: int, n_clients: int, seed: int = 42) -> list[np.ndarray]:
    """Shuffle the rows and cut them into ``n_clients`` parts of equal size (±1)."""
    if n_clients < 1 or n_clients > n_rows:
        raise SpecError([f"`clients` must be between 1 and the {n_rows} rows, got {n_clients}"])
    perm = np.random.default_rng(seed).permutation(n_rows)
    return [np.sort(part) for part in np.array_split(perm, n_clients)]


def partition_dirichlet(
    labels: np.ndarray,
    n_clients: int,
    alpha: float,
    *,
    min_partition_size: int = 10,
    seed: int = 42,
) -> list[np.ndarray]:
    """Label-skewed split: per class, client shares drawn from ``Dirichlet(alpha)``.

    Small ``alpha`` gives very unequal clients (one class each); large ``alpha`` tends to IID.
    Draws are repeated (at most 100 times) until every client has ``min_partition_size`` rows.
    """
    if alpha <= 0:
        raise SpecError([f"`alpha` must be > 0, got {alpha}"])
    n = len(labels)
    if n_clients * min_partition_size > n:
        raise DataError(
            f"{n} rows cannot give {n_clients} clients at least {min_partition_size} rows each",
            hint="lower `clients` or `min_partition_size`",
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(DIRICHLET_MAX_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for cls in classes:
            rows = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
            for client, chunk in enumerate(np.split(rows, cuts)):
                parts[client].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_partition_size:
            return out
    raise DataError(
        f"Dirichlet(alpha={alpha}) split left a client under {min_partition_size} rows "
        f"after {DIRICHLET_MAX_TRIES} draws",
        hint="raise `alpha`, lower `clients` or `min_partition_size`",
    )
