"""Load a job spec: YAML -> env expansion -> overrides -> pydantic -> typed stages -> DAG checks.

All problems are collected and raised together as one :class:`SpecError`, each with the file,
line and YAML path it concerns.
"""

from __future__ import annotations

import graphlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from raypipe.errors import SpecError
from raypipe.spec.job import InputRef, Job, JobStage
from raypipe.spec.models import JobSpec, StageSpec
from raypipe.spec.source import (
    YamlSource,
    apply_overrides,
    declared_env,
    expand_env,
    read_yaml_source,
)
from raypipe.stages.registry import StageKindError, load_stage

__all__ = ["load_job", "resolve_job"]


def load_job(
    path: str | Path,
    *,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    data_dir: str | None = None,
) -> Job:
    """Read, check and resolve the job spec at ``path``.

    Parameters
    ----------
    path
        The job's YAML file.
    overrides
        ``key.path=value`` strings applied after reading (``--set``).
    env
        Environment for ``${VAR}`` expansion (default: ``os.environ``).
    data_dir
        Replaces the spec's ``data_dir`` when given (``--data-dir``).

    Raises
    ------
    SpecError
        With every problem found, each located by file, line and YAML path.
    """
    source = read_yaml_source(path)
    if data_dir is not None:
        overrides = [*overrides, f"data_dir={data_dir}"]
    return resolve_job(source, overrides=overrides, env=env)


def resolve_job(
    source: YamlSource,
    *,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Job:
    """Check and resolve an already parsed spec; see :func:`load_job`."""
    declared, env_problems = declared_env(source.data)
    data = expand_env(
        source.data,
        os.environ if env is None else env,
        declared=declared,
        problems=env_problems,
    )
    problems = [f"{source.where(path)}: {message}" for path, message in env_problems]
    problems += apply_overrides(data, overrides)
    spec: JobSpec | None = None
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        problems += [_pydantic_problem(source, (), error) for error in exc.errors()]
    stage_specs = _valid_stage_specs(data)
    stages = _resolve_stages(source, stage_specs, _stage_names(data), problems)
    order = _dependency_order(source, stages, problems)
    if problems or spec is None:
        raise SpecError(problems, source=source.name)
    return Job(
        name=spec.name,
        data_dir=spec.data_dir,
        stages=tuple(stages[name] for name in order),
        storage_options=spec.storage_options,
        source=source.name,
        keep_versions=spec.keep_versions,
    )


def _stage_names(data: Any) -> set[str]:
    stages = data.get("stages") if isinstance(data, dict) else None
    return set(stages) if isinstance(stages, dict) else set()


def _valid_stage_specs(data: Any) -> dict[str, StageSpec]:
    """Stage entries that have the right shape; shape errors were reported with the job's."""
    stages = data.get("stages") if isinstance(data, dict) else None
    valid: dict[str, StageSpec] = {}
    for name, raw in (stages or {}).items() if isinstance(stages, dict) else ():
        try:
            valid[str(name)] = StageSpec.model_validate(raw)
        except ValidationError:
            continue
    return valid


def _resolve_stages(
    source: YamlSource,
    stage_specs: Mapping[str, StageSpec],
    all_names: set[str],
    problems: list[str],
) -> dict[str, JobStage]:
    resolved: dict[str, JobStage] = {}
    for name, stage_spec in stage_specs.items():
        stage = _resolve_stage(source, stage_specs, all_names, name, stage_spec, problems)
        if stage is not None:
            resolved[name] = stage
    return resolved


def _resolve_stage(
    source: YamlSource,
    stage_specs: Mapping[str, StageSpec],
    all_names: set[str],
    name: str,
    stage_spec: StageSpec,
    problems: list[str],
) -> JobStage | None:
    path: tuple[str | int, ...] = ("stages", name)
    try:
        stage_class = load_stage(stage_spec.uses)
    except StageKindError as exc:
        problems.append(f"{source.where((*path, 'uses'))}: {exc.message}; hint: {exc.hint}")
        return None
    options = None
    try:
        options = stage_class.options.model_validate(stage_spec.with_)
    except ValidationError as exc:
        known = sorted(
            field.alias or name for name, field in stage_class.options.model_fields.items()
        )
        problems += [
            _pydantic_problem(source, (*path, "with"), error, known_keys=known)
            for error in exc.errors()
        ]
    inputs = _resolve_inputs(
        source, stage_specs, all_names, name, stage_spec, stage_class, problems
    )
    if options is None or inputs is None:
        return None
    return JobStage(
        name=name,
        kind=stage_spec.uses,
        stage_class=stage_class,
        options=options,
        inputs=inputs,
    )


def _resolve_inputs(
    source: YamlSource,
    stage_specs: Mapping[str, StageSpec],
    all_names: set[str],
    name: str,
    stage_spec: StageSpec,
    stage_class: Any,
    problems: list[str],
) -> dict[str, InputRef] | None:
    path: tuple[str | int, ...] = ("stages", name, "inputs")
    before = len(problems)
    accepted = set(stage_class.accepted_inputs())
    accepts_any = stage_class.accepts_any_inputs
    for missing in sorted(set(stage_class.inputs) - set(stage_spec.inputs)):
        problems.append(
            f"{source.where(path)}: stage `{name}` ({stage_spec.uses}) needs input `{missing}`"
        )
    inputs: dict[str, InputRef] = {}
    for input_name, reference in stage_spec.inputs.items():
        where = source.where((*path, input_name))
        if not accepts_any and input_name not in accepted:
            expected = ", ".join(sorted(accepted)) or "no inputs"
            problems.append(
                f"{where}: `{stage_spec.uses}` has no input `{input_name}`; expected: {expected}"
            )
            continue
        upstream, _, pinned = reference.partition(".")
        output, _, version = pinned.partition("@")
        if upstream == name:
            problems.append(f"{where}: stage `{name}` cannot read its own output")
            continue
        if upstream not in all_names:
            problems.append(
                f"{where}: `{reference}` names an unknown stage `{upstream}`; "
                f"stages: {', '.join(sorted(all_names))}"
            )
            continue
        if upstream not in stage_specs:
            continue
        upstream_kind = stage_specs[upstream].uses
        try:
            outputs = load_stage(upstream_kind).outputs
        except StageKindError:
            continue  # reported at the upstream stage's `uses`
        if output not in outputs:
            problems.append(
                f"{where}: stage `{upstream}` ({upstream_kind}) has no output `{output}`; "
                f"outputs: {', '.join(outputs)}"
            )
            continue
        inputs[input_name] = InputRef(stage=upstream, output=output, version=version or None)
    return inputs if len(problems) == before else None


def _dependency_order(
    source: YamlSource, stages: Mapping[str, JobStage], problems: list[str]
) -> list[str]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for stage in stages.values():
        sorter.add(stage.name, *sorted(stage.depends_on & set(stages)))
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        problems.append(f"{source.where(('stages',))}: stages form a cycle: {cycle}")
        return []


def _pydantic_problem(
    source: YamlSource,
    prefix: tuple[str | int, ...],
    error: Mapping[str, Any],
    known_keys: Sequence[str] = (),
) -> str:
    location = tuple(part for part in error.get("loc", ()) if part != "__root__")
    path = (*prefix, *location)
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        message = "unknown key"
        if known_keys and len(location) == 1:
            message += f"; expected one of: {', '.join(known_keys)}"
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = error.get("msg", "invalid value")
        if "input" in error and kind not in ("dict_type", "model_type"):
            message += f" (received `{error['input']!r}`)"
    return f"{source.where(path)}: {message}"
