"""Batch inference: load a model once, score Arrow batches, commit scores exactly once.

The functional core (no Ray): :class:`Predictor` scores Arrow batches by the model's feature
names; :func:`run_batch_inference` plans one unit per input file, skips committed units, runs the
rest through a runner and commits one manifest. The Ray runner (an actor pool) lives in
``raypipe.engine.scoring``; the job stage kind is ``inference.score``.
"""

from __future__ import annotations

from raypipe.inference.batch import (
    InferenceReport,
    QuarantinedFile,
    executor_runner,
    inline_runner,
    run_batch_inference,
)
from raypipe.inference.model import ModelBlob, read_model
from raypipe.inference.planning import InferenceSpec, ScoringJob, ScoringUnit
from raypipe.inference.predictor import Predictor

__all__ = [
    "InferenceReport",
    "InferenceSpec",
    "ModelBlob",
    "Predictor",
    "QuarantinedFile",
    "ScoringJob",
    "ScoringUnit",
    "executor_runner",
    "inline_runner",
    "read_model",
    "run_batch_inference",
]
