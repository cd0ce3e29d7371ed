"""The stage kinds a job may use: built-in names, installed packages' names, import references.

A job names a kind in ``uses:`` three ways:

- a built-in kind (``ingest``), from the static table below;
- a kind an installed package registers in the ``raypipe.stages`` entry-point group, e.g. in its
  ``pyproject.toml``: ``[project.entry-points."raypipe.stages"] "acme.dedupe" =
  "acme_stages.dedupe:DedupeStage"``;
- an import reference ``package.module:Class`` to any importable stage class.

A static table (not import-time registration) so ``raypipe validate`` can list every kind
without importing every stage's dependencies, and adding a built-in kind is one reviewed line.
Every class, whichever way it is named, passes the same checks (:func:`load_stage`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from importlib.metadata import entry_points
from typing import Any, cast

from pydantic import BaseModel

from raypipe.errors import RaypipeError
from raypipe.stages.base import Stage, StageOptions

__all__ = [
    "ENTRY_POINT_GROUP",
    "STAGE_KINDS",
    "StageKindError",
    "installed_kinds",
    "known_kinds",
    "load_stage",
]

logger = logging.getLogger(__name__)

#: The entry-point group through which installed packages add named stage kinds.
ENTRY_POINT_GROUP = "raypipe.stages"

STAGE_KINDS: dict[str, str] = {
    "synth.game_telemetry": "raypipe.synth.stage:GameTelemetryStage",
    "ingest": "raypipe.ingest.stage:IngestStage",
    "data.profile": "raypipe.validation.profile_stage:ProfileStage",
    "data.check": "raypipe.validation.check_stage:CheckStage",
    "features.training_set": "raypipe.features.stage:TrainingSetStage",
    "features.scoring_set": "raypipe.features.stage:ScoringSetStage",
    "features.point_in_time_join": "raypipe.features.pit_stage:PitJoinStage",
    "features.discover": "raypipe.features.discover_stage:DiscoverStage",
    "features.materialize": "raypipe.features.store.stage:MaterializeStage",
    "features.purchase_time": "raypipe.features.purchase_time:PurchaseTimeStage",
    "features.stream": "raypipe.features.streaming.stage:StreamStage",
    "train.search": "raypipe.training.stage:TrainSearchStage",
    "inference.score": "raypipe.inference.stage:ScoreStage",
    "monitor.report": "raypipe.monitoring.monitor_stage:MonitorReportStage",
    "federated.train": "raypipe.federated.stage:FederatedTrainStage",
    "synth.player_spend": "raypipe.synth.spend:PlayerSpendStage",
    "evaluate.regression": "raypipe.evaluation.regression_stage:RegressionEvalStage",
    "synth.recommendations": "raypipe.synth.catalog:RecommendationDataStage",
    "recommend.als": "raypipe.recommend.stage:AlsStage",
    "evaluate.ranking": "raypipe.evaluation.ranking_stage:RankingEvalStage",
    "synth.build_telemetry": "raypipe.synth.builds:BuildTelemetryStage",
    "buildqa.detect": "raypipe.buildqa.stage:BuildQaStage",
    "difficulty.simulate": "raypipe.difficulty.stage:DifficultyStage",
    "serve.deploy": "raypipe.serving.stage:DeployStage",
}

_HOW_TO_NAME = (
    "a stage class from another package is named `package.module:Class`; an installed package "
    f"adds named kinds through the `{ENTRY_POINT_GROUP}` entry-point group"
)


class StageKindError(RaypipeError):
    """A ``uses:`` value names no stage kind, or names a class that is not a valid stage."""


def installed_kinds() -> dict[str, str]:
    """Kinds registered by installed packages: name -> ``module:Class``.

    Read from the package metadata on every call (cheap), so a package installed while the
    process runs is seen. A name that a built-in kind already has is ignored with a warning:
    a job spec must mean the same thing wherever it runs.
    """
    found: dict[str, str] = {}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        reference = f"{entry.module}:{entry.attr}"
        if entry.name in STAGE_KINDS:
            logger.warning(
                "ignoring stage kind `%s` -> `%s` from an installed package: "
                "a built-in kind has that name",
                entry.name,
                reference,
            )
        elif found.setdefault(entry.name, reference) != reference:
            logger.warning(
                "stage kind `%s` is registered twice (`%s`, `%s`); using `%s`",
                entry.name,
                found[entry.name],
                reference,
                found[entry.name],
            )
    return found


def known_kinds() -> list[str]:
    """Every named kind: built-in and registered by installed packages, sorted."""
    return sorted({**installed_kinds(), **STAGE_KINDS})


def load_stage(uses: str) -> type[Stage[Any]]:
    """Import and check the stage class that ``uses`` names.

    Parameters
    ----------
    uses
        A built-in or installed kind name, or an import reference ``package.module:Class``.

    Raises
    ------
    StageKindError
        When the name is unknown, the module or class cannot be imported, or the class is not a
        :class:`~raypipe.stages.base.Stage` with an options model and tuples of input and output
        names.
    """
    reference = STAGE_KINDS.get(uses) or installed_kinds().get(uses) or uses
    module_name, colon, class_name = reference.partition(":")
    if not (colon and module_name and class_name):
        raise StageKindError(
            f"unknown stage kind `{uses}`; expected one of: {', '.join(known_kinds())}",
            hint=_HOW_TO_NAME,
        )
    module = _import_module(uses, module_name)
    stage_class = module
    for part in class_name.split("."):
        stage_class = getattr(stage_class, part, None)
        if stage_class is None:
            classes = ", ".join(_stage_classes(module)) or "none"
            raise StageKindError(
                f"stage kind `{uses}`: module `{module_name}` has no `{class_name}`",
                hint=f"stage classes in `{module_name}`: {classes}",
            )
    _check_stage_class(uses, stage_class)
    return cast("type[Stage[Any]]", stage_class)  # a Stage subclass: checked just above


def _import_module(uses: str, module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        failure = f"stage kind `{uses}`: importing `{module_name}` failed"
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            # The named module (or a parent) is absent, rather than something it imports.
            raise StageKindError(
                f"stage kind `{uses}`: no module `{module_name}` (`{missing}` is not installed "
                "or not on the Python path)",
                hint=f"install the package that provides it, or check the spelling; {_HOW_TO_NAME}",
            ) from exc
        if missing:
            hint = f"install `{missing}`, which `{module_name}` imports"
        else:
            hint = f"fix `{module_name}`; `python -c 'import {module_name}'` shows the traceback"
        raise StageKindError(f"{failure}: {type(exc).__name__}: {exc}", hint=hint) from exc


def _check_stage_class(uses: str, stage_class: object) -> None:
    """The checks every kind passes: the class shape the spec loader and driver rely on."""
    hint = (
        "subclass `raypipe.stages.Stage`, set `options` to a `raypipe.stages.StageOptions` "
        "subclass, `inputs` and `outputs` to tuples of names, and implement `run`"
    )
    if not (inspect.isclass(stage_class) and issubclass(stage_class, Stage)):
        raise StageKindError(
            f"stage kind `{uses}` is not a stage class: expected a subclass of "
            f"`raypipe.stages.Stage`, received {_describe(stage_class)}",
            hint=hint,
        )
    options = getattr(stage_class, "options", None)
    if not (inspect.isclass(options) and issubclass(options, BaseModel)):
        raise StageKindError(
            f"stage kind `{uses}`: `options` must be a `StageOptions` subclass, received "
            f"{_describe(options)}",
            hint=hint,
        )
    if not issubclass(options, StageOptions):
        # A plain BaseModel would accept unknown keys silently; built-in kinds never do.
        raise StageKindError(
            f"stage kind `{uses}`: `options` ({options.__name__}) must subclass "
            "`raypipe.stages.StageOptions`, which rejects unknown keys",
            hint=hint,
        )
    for attribute in ("inputs", "optional_inputs", "outputs"):
        names = getattr(stage_class, attribute)
        if not (isinstance(names, tuple) and all(isinstance(n, str) for n in names)):
            raise StageKindError(
                f"stage kind `{uses}`: `{attribute}` must be a tuple of names, received "
                f"`{names!r}`",
                hint=hint,
            )
    if stage_class.run is Stage.run:
        raise StageKindError(f"stage kind `{uses}` does not implement `run`", hint=hint)


def _stage_classes(module: object) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, Stage) and value is not Stage
    )


def _describe(value: object) -> str:
    if inspect.isclass(value):
        return f"class `{value.__module__}.{value.__qualname__}`"
    if value is None:
        return "nothing"
    return f"a `{type(value).__name__}`"
