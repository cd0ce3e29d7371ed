"""The ``data.check`` stage: quality rules with warn / fail / quarantine policies."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, model_validator

from raypipe.errors import DataError
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult
from raypipe.validation.rules import Policy, Rule, RuleSetSpec, read_rules

__all__ = ["CheckOptions", "CheckStage", "describe_failures"]

logger = logging.getLogger(__name__)


class CheckOptions(StageOptions):
    """Options of ``data.check``.

    Rules come from ``rules`` (inline), ``rules_file`` (a YAML file), and/or are inferred from
    the optional input ``reference`` (a dataset, profiled here) or ``reference_profile`` (the
    output of a ``data.profile`` stage: no reread of the reference data; ``profile_table``
    picks its table). ``infer_policy`` sets the inferred rules' policy.
    """

    rules: list[Rule] = Field(default_factory=list)
    rules_file: str | None = None
    infer_policy: Policy = "warn"
    profile_table: str | None = None
    now: dt.datetime | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> CheckOptions:
        RuleSetSpec(rules=list(self.rules))
        return self


def describe_failures(report: Any) -> str:
    lines = []
    for result in report.failed:
        what = f"{result.failing} failing row(s)" if result.failing else result.detail
        lines.append(f"`{result.rule}` ({result.check}): {what}")
    return "; ".join(lines)


def _stored_profile(source: DatasetInput, table: str | None, storage: Any) -> Any:
    from raypipe.io.dataset import read_dataset
    from raypipe.validation.profiling import read_profile_table

    profiles = read_profile_table(read_dataset(source.url, storage_options=storage))
    if table is None and len(profiles) == 1:
        return next(iter(profiles.values()))
    if table not in profiles:
        raise DataError(
            f"the profile `{source.url}` has no table `{table}`; tables: "
            f"{', '.join(f'`{name}`' for name in sorted(profiles))}",
            hint="set `with.profile_table` to one of them",
        )
    return profiles[table]


class CheckStage(Stage[CheckOptions]):
    """Check ``data``; commit passing rows (``data``), quarantined rows and per-rule results."""

    kind = "data.check"
    options = CheckOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    optional_inputs: ClassVar[tuple[str, ...]] = ("reference", "reference_profile")
    outputs: ClassVar[tuple[str, ...]] = ("data", "quarantine", "results")

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: CheckOptions
    ) -> StageResult:
        from raypipe.io.dataset import write_dataset
        from raypipe.validation.checking import run_check
        from raypipe.validation.profiling import run_profile
        from raypipe.validation.rule_inference import infer_rules

        storage = dict(context.storage_options) or None
        rules = list(options.rules)
        if options.rules_file:
            rules += read_rules(options.rules_file).rules
        if "reference" in inputs:
            reference = inputs["reference"]
            profile = run_profile(
                "reference",
                reference.url,
                reference.manifest,
                context.executor,
                storage_options=storage,
            )
            rules += infer_rules(profile, policy=options.infer_policy)
        if "reference_profile" in inputs:
            rules += infer_rules(
                _stored_profile(inputs["reference_profile"], options.profile_table, storage),
                policy=options.infer_policy,
            )
        if not rules:
            raise DataError(
                f"stage `{context.stage_name}` has no rules to check",
                hint="set `with.rules`, `with.rules_file` or an input `reference` to infer from",
            )
        rule_set = RuleSetSpec(rules=rules)
        source = inputs["data"]
        report = run_check(
            source.url,
            source.manifest,
            rule_set,
            context.executor,
            data_url=context.output_url("data"),
            quarantine_url=context.output_url("quarantine"),
            now=options.now,
            storage_options=storage,
        )
        for result in report.warnings:
            logger.warning(
                "%s: rule `%s` failed (%d rows) %s",
                context.stage_name,
                result.rule,
                result.failing,
                result.detail,
            )
        if report.failed:
            raise DataError(
                f"stage `{context.stage_name}`: {len(report.failed)} rule(s) with policy "
                f"`fail` did not pass on `{source.url}`: {describe_failures(report)}",
                hint="fix the data, or set the rule's `policy` to `warn` or `quarantine`",
            )
        results = write_dataset(
            context.output_url("results"), report.to_table(), storage_options=storage
        )
        outputs = dict(report.outputs)
        outputs["results"] = results
        return StageResult(
            outputs=outputs,
            metrics={
                "rules": len(report.results),
                "failed_rules": sum(not r.passed for r in report.results),
                "warnings": len(report.warnings),
                "quarantined": report.quarantined,
            },
            rows_in=source.rows,
            rows_out=outputs["data"].rows,
        )
