"""Search spaces per candidate: YAML defaults shipped with raypipe, overridable per job.

A space is validated at the edge (pydantic, unknown keys are errors) and turned into Optuna
distributions, so the driver's TPE sampler (or Tune's ``OptunaSearch``) can ``ask`` for a
configuration with a fixed space. :meth:`ParamSpec.tune_sampler` names the equivalent Ray Tune
sampling function, so Tune's random search draws from the same ranges without this module
importing Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raypipe.errors import SpecError
from raypipe.spec.bounded_yaml import parse_bounded_yaml

__all__ = ["CANDIDATES", "ParamSpec", "SpaceSpec", "default_spaces", "resolve_spaces"]

CANDIDATES = ("xgboost", "logistic", "random_forest", "hist_gb")


class ParamSpec(BaseModel):
    """One searched parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
        else:
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError(f"needs `low` <= `high`, received {self.low}, {self.high}")
            if self.log and self.low <= 0:
                raise ValueError(f"a log-scale parameter needs `low` > 0, received {self.low}")
        return self

    def distribution(self) -> Any:
        """The Optuna distribution of this parameter."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices or []))
        if self.type == "int":
            return IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log)
        return FloatDistribution(float(self.low or 0.0), float(self.high or 0.0), log=self.log)

    def tune_sampler(self) -> tuple[str, tuple[Any, ...]]:
        """The Ray Tune sampling function (a ``ray.tune`` attribute) and its arguments.

        Tune's integer samplers exclude their upper bound, so ``high`` is passed as ``high + 1``:
        both bounds stay inclusive, as in :meth:`distribution`.
        """
        if self.type == "categorical":
            return "choice", (list(self.choices or []),)
        low, high = self.low or 0, self.high or 0
        if self.type == "int":
            return ("lograndint" if self.log else "randint"), (int(low), int(high) + 1)
        return ("loguniform" if self.log else "uniform"), (float(low), float(high))


class SpaceSpec(BaseModel):
    """The searched and the fixed parameters of one candidate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, ParamSpec] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of the searched parameters, by name."""
        return {name: spec.distribution() for name, spec in self.params.items()}

    def tune_samplers(self) -> dict[str, tuple[str, tuple[Any, ...]]]:
        """:meth:`ParamSpec.tune_sampler` of the searched parameters, by name."""
        return {name: spec.tune_sampler() for name, spec in self.params.items()}


@cache
def _default_yaml() -> dict[str, Any]:
    text = resources.files("raypipe.training").joinpath("spaces.yaml").read_text()
    return dict(parse_bounded_yaml(text, "raypipe/training/spaces.yaml"))


def default_spaces() -> dict[str, SpaceSpec]:
    """The spaces shipped in ``raypipe/training/spaces.yaml``."""
    return {name: SpaceSpec.model_validate(body) for name, body in _default_yaml().items()}


def resolve_spaces(
    candidates: list[str], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, SpaceSpec]:
    """The space of each candidate: the default, with ``overrides[name]`` keys replacing its own.

    Raises
    ------
    SpecError
        An unknown candidate or an invalid override (all problems at once).
    """
    defaults = _default_yaml()
    problems = [
        f"`candidates`: unknown candidate `{name}`; expected one of {', '.join(CANDIDATES)}"
        for name in candidates
        if name not in CANDIDATES
    ]
    problems += [
        f"`spaces.{name}`: not among the job's candidates ({', '.join(candidates)})"
        for name in (overrides or {})
        if name not in candidates
    ]
    spaces: dict[str, SpaceSpec] = {}
    for name in candidates:
        if name not in CANDIDATES:
            continue
        body = dict(defaults.get(name, {}))
        override = dict((overrides or {}).get(name, {}))
        if "params" in override:
            body["params"] = override.pop("params")
        if "fixed" in override:
            body["fixed"] = {**body.get("fixed", {}), **override.pop("fixed")}
        body.update(override)
        try:
            spaces[name] = SpaceSpec.model_validate(body)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"])
                problems.append(f"`spaces.{name}.{where}`: {error['msg']}")
    if problems:
        raise SpecError(problems, hint="see raypipe/training/spaces.yaml for the defaults")
    return spaces
