"""The job spec as pydantic models: the shape of ``JOB.yaml`` before stage options are typed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["JobSpec", "StageSpec"]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class StageSpec(BaseModel):
    """One entry of ``stages:``: which kind it uses, its inputs and its options."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    uses: str = Field(description="Stage kind, e.g. `synth.game_telemetry`.")
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="Input name -> `<stage>.<output>`, or `<stage>.<output>@<version>` to read "
        "a kept version (`raypipe data versions URL` lists them).",
    )
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="Options of the stage kind."
    )

    @field_validator("inputs")
    @classmethod
    def _inputs_are_references(cls, inputs: dict[str, str]) -> dict[str, str]:
        for name, reference in inputs.items():
            stage, dot, rest = reference.partition(".")
            output, at, version = rest.partition("@")
            if not (stage and dot and output) or (at and not version):
                raise ValueError(
                    f"input `{name}` must name `<stage>.<output>` or "
                    f"`<stage>.<output>@<version>`, received `{reference}`"
                )
        return inputs


class JobSpec(BaseModel):
    """A whole job: its name, where its data lives and its stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    env: list[str] = Field(
        default_factory=list,
        description="Environment variables `${NAME}` may expand (besides `RAYPIPE_*`).",
    )
    data_dir: str = "./raypipe-data"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    keep_versions: int = Field(
        3, ge=1, le=1000, description="Committed versions each stage output keeps readable."
    )
    stages: dict[str, StageSpec] = Field(min_length=1)
    lifecycle: dict[str, Any] | None = Field(
        default=None,
        description="Model lifecycle policy, validated by `raypipe.tracking.policy` when used.",
    )

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, stages: dict[str, StageSpec]) -> dict[str, StageSpec]:
        import re

        bad = [name for name in stages if not re.match(NAME_PATTERN, name)]
        if bad:
            raise ValueError(
                f"stage names must match {NAME_PATTERN}, received {', '.join(map(repr, bad))}"
            )
        return stages
