"""The table of stage kinds: ``uses:`` name -> where its class lives.

A static table (not import-time registration) so ``raypipe validate`` can list every kind
without importing every stage's dependencies, and adding a kind is one reviewed line.
"""

from __future__ import annotations

import importlib
from functools import cache

from raypipe.stages.base import Stage

__all__ = ["STAGE_KINDS", "known_kinds", "load_stage"]

STAGE_KINDS: dict[str, str] = {
    "synth.game_telemetry": "raypipe.synth.stage:GameTelemetryStage",
    "ingest": "raypipe.io.ingest_stage:IngestStage",
    "data.profile": "raypipe.validation.profile_stage:ProfileStage",
    "data.check": "raypipe.validation.check_stage:CheckStage",
    "features.training_set": "raypipe.features.stage:TrainingSetStage",
    "features.scoring_set": "raypipe.features.stage:ScoringSetStage",
    "features.point_in_time_join": "raypipe.features.pit_stage:PitJoinStage",
    "features.discover": "raypipe.features.discover_stage:DiscoverStage",
    "features.materialize": "raypipe.features.store.stage:MaterializeStage",
    "features.purchase_time": "raypipe.features.purchase_time:PurchaseTimeStage",
    "train.search": "raypipe.training.stage:TrainSearchStage",
    "inference.score": "raypipe.inference.stage:ScoreStage",
    "monitor.report": "raypipe.monitoring.monitor_stage:MonitorReportStage",
    "federated.train": "raypipe.federated.stage:FederatedTrainStage",
    "serve.deploy": "raypipe.serving.stage:DeployStage",
}


def known_kinds() -> list[str]:
    return sorted(STAGE_KINDS)


@cache
def load_stage(kind: str) -> type[Stage]:
    """Import and return the stage class of ``kind``; ``KeyError`` when the kind is unknown."""
    module_name, _, class_name = STAGE_KINDS[kind].partition(":")
    stage_class: type[Stage] = getattr(importlib.import_module(module_name), class_name)
    return stage_class
