"""The ``inference.score`` stage kind: score a dataset with a model, exactly once per row.

The model is either the option ``model:`` (an XGBoost ``.json``/``.ubj`` URL or
``models:/name@alias``, resolved in the job's registry) or the optional input ``model``: the
model artifact of a ``train.search`` stage, whose file and encoding state are read with their
checksums verified; with ``model_alias: champion`` the registry's champion of that same
registered model is scored instead (the input then orders the stage after training).

Units run on the backend's warm scoring pool, the one ``raypipe infer`` uses (on Ray, a few
long-lived actors that keep the model loaded for every scoring stage of the run); bad files and
the time split are reported in the stage's metrics. A stage rerun after a crash resumes from the
unit markers (their ids include the model and file versions, so nothing stale is reused).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from raypipe.errors import ModelError, SpecError
from raypipe.inference.model import ModelBlob, read_model
from raypipe.inference.planning import DEFAULT_BATCH_ROWS, InferenceSpec, OnBadFile
from raypipe.inference.pool import ScoringBackend, score_on_pool
from raypipe.stages.backend import require
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["SHAP_NOT_AVAILABLE", "ScoreOptions", "ScoreStage", "read_model_artifact"]

#: Suffixes of the ``model.*`` file inside a training stage's model artifact (beside it lie
#: ``metrics.json``, ``preprocess.json`` and the report, which are not models).
MODEL_SUFFIXES = ("ubj", "json", "skops", "pkl")  # a pickle is found, then refused clearly

logger = logging.getLogger(__name__)


class ScoreOptions(StageOptions):
    """Options of ``inference.score``."""

    model: str | None = Field(
        default=None, description="Model URI; without it the `model` input is used."
    )
    id_columns: list[str] = Field(default_factory=list)
    batch_size: int = Field(default=DEFAULT_BATCH_ROWS, ge=1)
    partition_by: list[str] = Field(default_factory=list)
    target_file_mib: int = Field(default=128, ge=1)
    on_bad_file: OnBadFile = "fail"
    shap: bool | Literal["auto"] = Field(
        default=False,
        description="Add SHAP contributions; `auto` adds them when the model has them (XGBoost "
        "and linear models) and otherwise records in the stage's metrics that they are not "
        "available for this model.",
    )
    model_alias: str | None = Field(
        default=None,
        description="With input `model`: score with this registry alias of the same registered "
        "model (e.g. `champion`) instead of the artifact's own file.",
    )

    def to_spec(
        self,
        input_url: str,
        output_url: str,
        *,
        shap: bool,
        storage_options: Mapping[str, Any] | None = None,
    ) -> InferenceSpec:
        """The scoring spec of these options: the one translation, used by the stage and by
        ``raypipe infer`` (``shap`` resolved: ``auto`` depends on the model)."""
        return InferenceSpec(
            input_url=input_url,
            output_url=output_url,
            id_columns=tuple(self.id_columns),
            batch_rows=self.batch_size,
            partition_by=tuple(self.partition_by),
            target_file_bytes=self.target_file_mib * 1024**2,
            on_bad_file=self.on_bad_file,
            shap=shap,
            storage_options=dict(storage_options or {}),
        )


SHAP_NOT_AVAILABLE = "not available for this model (XGBoost and linear models have them)"


class ScoreStage(Stage[ScoreOptions]):
    """Score the ``data`` input; commit ``scores`` (id columns, ``score``, optional SHAP)."""

    kind = "inference.score"
    options = ScoreOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("model",)
    outputs: ClassVar[tuple[str, ...]] = ("scores",)

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: ScoreOptions,
    ) -> StageResult:
        model = _stage_model(inputs, options, context)
        shap = _wants_shap(model, options.shap, context.stage_name)
        spec = options.to_spec(
            inputs["data"].url,
            context.output_url("scores"),
            shap=shap,
            storage_options=context.storage_options,
        )
        pool = require(context.backend, ScoringBackend, stage=context.stage_name).scoring_pool()
        report = score_on_pool(model, spec, pool, resume=True)
        for line in report.advice:
            logger.info("%s: %s", context.stage_name, line)
        from raypipe.io.manifest import read_manifest

        manifest = read_manifest(spec.output_url, dict(spec.storage_options) or None)
        times = report.times
        return StageResult(
            outputs={"scores": manifest},
            metrics={
                "model_uri": model.uri,
                "model_version": model.version,
                "shap": shap if shap or options.shap != "auto" else SHAP_NOT_AVAILABLE,
                "quarantined": [item.file for item in report.quarantined],
                "read_s": round(times.read_s, 3) if times else 0.0,
                "predict_s": round(times.predict_s, 3) if times else 0.0,
                "write_s": round(times.write_s, 3) if times else 0.0,
                "bottleneck": times.bottleneck if times else "",
            },
            rows_in=inputs["data"].rows,
            rows_out=manifest.rows,
        )


def _stage_model(
    inputs: Mapping[str, DatasetInput], options: ScoreOptions, context: StageContext
) -> ModelBlob:
    if options.model:
        return read_model(options.model, tracking_uri=_tracking_uri(options.model, context))
    if "model" not in inputs:
        raise SpecError(
            [f"stage `{context.stage_name}` needs `with.model` (a model URI) or input `model`"],
            hint="e.g. `inputs: {data: features.training_set, model: train.model}`",
        )
    model_input = inputs["model"]
    if options.model_alias:
        name = (model_input.manifest.metadata or {}).get("model_name")
        if not name:
            raise ModelError(
                f"Model artifact `{model_input.url}` does not say its registered `model_name`, so "
                f"alias `{options.model_alias}` cannot be resolved",
                hint="pass `with.model: models:/NAME@ALIAS` instead",
            )
        uri = f"models:/{name}@{options.model_alias}"
        return read_model(uri, tracking_uri=_tracking_uri(uri, context))
    return read_model_artifact(model_input)


def _wants_shap(model: ModelBlob, shap: bool | str, stage_name: str) -> bool:
    if shap != "auto":
        return bool(shap)
    from raypipe.inference.predictor import Predictor

    if Predictor(model).explainable:
        return True
    # `auto` asked for "when the model has them": not a problem the user can act on, so it is
    # recorded in the stage's metrics (SHAP_NOT_AVAILABLE), not printed as a warning.
    logger.info(
        "%s: `%s` has no SHAP contributions (XGBoost and linear models do); scoring without",
        stage_name,
        model.uri,
    )
    return False


def _tracking_uri(uri: str, context: StageContext) -> str | None:
    """The registry of the job (under its data_dir), as the training stage resolves it."""
    if not uri.startswith("models:/"):
        return None
    try:
        from raypipe.tracking.store import resolve_tracking_uri
    except ImportError:
        return None
    return resolve_tracking_uri(None, context.data_dir)


def read_model_artifact(model_input: DatasetInput) -> ModelBlob:
    """The model file of a committed model artifact (checksum and encoding state verified)."""
    from raypipe.io.artifacts import artifact_names
    from raypipe.io.fs import join_url

    names = artifact_names(model_input.manifest)
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if stem == "model" and suffix.lower() in MODEL_SUFFIXES:
            return read_model(join_url(model_input.url, name))
    raise ModelError(
        f"Model artifact `{model_input.url}` holds no model file (`model.ubj`, `model.json` or "
        f"`model.skops`; it has {', '.join(f'`{name}`' for name in names) or 'no files'})",
        hint="pass `with.model:` a model URI instead",
    )
