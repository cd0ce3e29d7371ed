"""The ``data.profile`` stage: column profiles of any number of input tables, in one dataset."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.validation.profiling import profile_rows, run_profile
from raypipe.validation.stats import HISTOGRAM_BINS

__all__ = ["ProfileOptions", "ProfileStage"]

logger = logging.getLogger(__name__)


class ProfileOptions(StageOptions):
    """Options of ``data.profile``.

    ``columns`` limits the profiled columns per input name (all columns by default).
    """

    bins: int = Field(default=HISTOGRAM_BINS, ge=1, le=1000)
    columns: dict[str, list[str]] = Field(default_factory=dict)


class ProfileStage(Stage[ProfileOptions]):
    """Profile every input (any input names) into one ``profile`` dataset.

    Per (table, column): type, rows, nulls, null fraction, min, max, mean, std, distinct
    estimate, top values, histogram and the mergeable profile as JSON (the reference profile of
    that dataset version, which drift checks read instead of the data).
    """

    kind = "data.profile"
    options = ProfileOptions
    inputs = ()
    accepts_any_inputs = True
    outputs = ("profile",)

    def run(
        self,
        context: StageContext,
        inputs: Mapping[str, DatasetInput],
        options: ProfileOptions,
    ) -> StageResult:
        from raypipe.io.dataset import write_dataset

        storage = dict(context.storage_options) or None
        profiles = []
        metrics: dict[str, Any] = {}
        for name in sorted(inputs):
            source = inputs[name]
            profile = run_profile(
                name,
                source.url,
                source.manifest,
                context.executor,
                columns=options.columns.get(name),
                bins=options.bins,
                storage_options=storage,
            )
            profiles.append(profile)
            metrics[f"{name}.rows"] = profile.rows
            metrics[f"{name}.nulls"] = profile.nulls
            metrics[f"{name}.columns"] = len(profile.columns)
            logger.info(
                "profiled `%s`: %d rows, %d columns, %d nulls",
                name,
                profile.rows,
                len(profile.columns),
                profile.nulls,
            )
        table = profile_rows(profiles)
        manifest = write_dataset(
            context.output_url("profile"),
            table,
            metadata={"tables": {p.name: p.version for p in profiles}},
            storage_options=storage,
        )
        return StageResult(
            outputs={"profile": manifest},
            metrics=metrics,
            rows_in=sum(source.rows for source in inputs.values()),
            rows_out=table.num_rows,
        )
