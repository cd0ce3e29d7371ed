"""Training: candidates, preprocessing, splits, search spaces, evaluation, model selection.

A functional core over pyarrow/numpy, tested without Ray. The search loop
(:func:`~raypipe.training.search.run_search`) asks Optuna for configurations in the driver and
runs trials on any :class:`~raypipe.training.search.TrialRunner`; the Ray actor pool lives in
:mod:`raypipe.engine.search`. The ``train.search`` stage is :mod:`raypipe.training.stage`.
"""

from __future__ import annotations

from raypipe.training.experiment import TrainingReport, TrainingSpec, prepare, run_training
from raypipe.training.metrics import (
    binary_metrics,
    cost_threshold,
    expected_calibration_error,
    regression_metrics,
    reliability_bins,
    reliability_svg,
)
from raypipe.training.preprocess import TablePreprocessor
from raypipe.training.search import InlineRunner, SearchResult, SearchSpec, run_search
from raypipe.training.spaces import CANDIDATES, SpaceSpec, default_spaces, resolve_spaces
from raypipe.training.split import Split, split_rows
from raypipe.training.trial import TrialData, TrialRequest, TrialResult, TrialWorker

__all__ = [
    "CANDIDATES",
    "InlineRunner",
    "SearchResult",
    "SearchSpec",
    "SpaceSpec",
    "Split",
    "TablePreprocessor",
    "TrainingReport",
    "TrainingSpec",
    "TrialData",
    "TrialRequest",
    "TrialResult",
    "TrialWorker",
    "binary_metrics",
    "cost_threshold",
    "default_spaces",
    "expected_calibration_error",
    "prepare",
    "regression_metrics",
    "reliability_bins",
    "reliability_svg",
    "resolve_spaces",
    "run_search",
    "run_training",
    "split_rows",
]
