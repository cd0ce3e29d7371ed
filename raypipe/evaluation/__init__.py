"""Evaluation against ground truth: a model's figure beside the best possible and a baseline.

Every studio job's evaluating stage reports ``quality: {metric, value, truth, baseline}`` (the
model's figure, the same figure for the generator's truth, and for a simple baseline), built by
:func:`quality`. The metric functions are plain numpy, tested without Ray.
"""

from __future__ import annotations

from raypipe.evaluation.quality import join_on_keys, quality
from raypipe.evaluation.ranking import ndcg_at_k, recall_at_k
from raypipe.evaluation.regression import decile_calibration, normalized_gini, rmse

__all__ = [
    "decile_calibration",
    "join_on_keys",
    "ndcg_at_k",
    "normalized_gini",
    "quality",
    "recall_at_k",
    "rmse",
]
