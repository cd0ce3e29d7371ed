"""Top-k ranking figures: recall@k and NDCG@k over players' relevant items."""

from __future__ import annotations

import numpy as np

__all__ = ["ndcg_at_k", "recall_at_k"]


def recall_at_k(recommended: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Mean over players of |top-k ∩ relevant| / min(k, |relevant|); players without relevant
    items are skipped.

    ``recommended`` is ``(players, >=k)`` item ids; ``relevant`` is a boolean ``(players,
    items)`` matrix.
    """
    top = recommended[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).sum(axis=1)
    counts = relevant.sum(axis=1)
    has = counts > 0
    if not has.any():
        return 0.0
    return float(np.mean(hits[has] / np.minimum(k, counts[has])))


def ndcg_at_k(recommended: np.ndarray, gain: np.ndarray, k: int) -> float:
    """Mean NDCG@k: discounted gain of the top-k over that of the ideal top-k, per player.

    ``gain`` is ``(players, items)`` (graded or binary relevance, >= 0); players whose ideal
    gain is 0 are skipped.

    Examples
    --------
    >>> gain = np.array([[0.0, 1.0, 2.0]])
    >>> ndcg_at_k(np.array([[2, 1, 0]]), gain, 2)
    1.0
    """
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    top = recommended[:, :k]
    dcg = (np.take_along_axis(gain, top, axis=1) * discount[: top.shape[1]]).sum(axis=1)
    ideal_gain = -np.sort(-gain, axis=1)[:, :k]
    idcg = (ideal_gain * discount[: ideal_gain.shape[1]]).sum(axis=1)
    has = idcg > 0
    if not has.any():
        return 0.0
    return float(np.mean(dcg[has] / idcg[has]))
