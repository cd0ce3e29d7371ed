"""Implicit-feedback recommendations: matrix factorisation (ALS from the ``implicit`` library)
trained as a Ray task, batch top-k per player as Ray tasks.

``implicit`` (0.7.3, CPU wheel) is the maintained implementation of Hu, Koren and Volinsky's
weighted ALS for implicit feedback; raypipe builds the confidence matrix, runs the fit and the
batch scoring through the stage's executor, and writes top-k lists as Parquet.
"""

from __future__ import annotations

from raypipe.recommend.als import (
    AlsParams,
    InteractionMatrix,
    fit_als,
    interaction_matrix,
    popular_items,
    top_k,
)

__all__ = [
    "AlsParams",
    "InteractionMatrix",
    "fit_als",
    "interaction_matrix",
    "popular_items",
    "top_k",
]
