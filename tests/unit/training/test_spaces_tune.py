"""Search spaces for the Tune engine: the Tune samplers draw from the Optuna distributions' ranges.

Imports ``ray.tune`` domains (pure objects) but never starts Ray.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raypipe.training.spaces import ParamSpec, SpaceSpec, default_spaces


def _domain(spec: ParamSpec) -> Any:
    from ray import tune

    function, args = spec.tune_sampler()
    return getattr(tune, function)(*args)


@st.composite
def numeric_specs(draw: st.DrawFn) -> ParamSpec:
    kind = draw(st.sampled_from(["int", "float"]))
    log = draw(st.booleans())
    low = draw(st.integers(1 if log else -50, 50))
    high = low + draw(st.integers(0, 60))
    if kind == "float" and high == low:
        high += 1
    return ParamSpec(type=kind, low=low, high=high, log=log)


@settings(max_examples=60, deadline=None)
@given(spec=numeric_specs(), seed=st.integers(0, 2**16))
def test_tune_samples_stay_in_the_optuna_range(spec: ParamSpec, seed: int) -> None:
    distribution = spec.distribution()
    values = _domain(spec).sample(size=200, random_state=np.random.default_rng(seed))
    assert all(distribution.low <= v <= distribution.high for v in values)
    if spec.type == "int":
        assert all(float(v).is_integer() for v in values)
        if spec.high - spec.low <= 3 and not spec.log:
            # Both bounds inclusive, like Optuna's IntDistribution: every value is drawn.
            assert set(int(v) for v in values) == set(range(int(spec.low), int(spec.high) + 1))


def test_each_parameter_type_maps_to_its_tune_sampler() -> None:
    assert ParamSpec(type="int", low=3, high=10).tune_sampler() == ("randint", (3, 11))
    assert ParamSpec(type="int", low=50, high=200, log=True).tune_sampler() == (
        "lograndint",
        (50, 201),
    )
    assert ParamSpec(type="float", low=0.5, high=1.0).tune_sampler() == ("uniform", (0.5, 1.0))
    assert ParamSpec(type="float", low=0.01, high=0.3, log=True).tune_sampler() == (
        "loguniform",
        (0.01, 0.3),
    )
    assert ParamSpec(type="categorical", choices=["a", 2]).tune_sampler() == (
        "choice",
        (["a", 2],),
    )


def test_every_default_space_converts_for_both_engines() -> None:
    for name, space in default_spaces().items():
        samplers = space.tune_samplers()
        assert set(samplers) == set(space.distributions()) == set(space.params), name
        for param, spec in space.params.items():
            domain = _domain(spec)
            if spec.type != "categorical":
                distribution = spec.distribution()
                upper = domain.upper - 1 if spec.type == "int" else domain.upper
                assert (domain.lower, upper) == (distribution.low, distribution.high), param
    assert SpaceSpec(fixed={"a": 1}).tune_samplers() == {}


def test_trial_folder_names_number_trials_from_zero() -> None:
    from raypipe.engine.tune_search import _index_from_dir, _TrialDirName

    class Trial:
        trial_id = "ab12cd34"
        experiment_tag = "3_max_depth=4,learning_rate=0.1"

    name = _TrialDirName(first=1)(Trial())
    assert name == "trial_00002_ab12cd34" and _index_from_dir(f"/tmp/x/{name}") == 2
    assert _index_from_dir("/tmp/x/_trainable_ab12_00003") == -1


def test_the_in_process_backend_refuses_tune_naming_the_stage_and_the_way_out() -> None:
    from raypipe.engine.inline import InlineBackend
    from raypipe.errors import RuntimeUnavailableError
    from raypipe.stages.backend import require
    from raypipe.training.search import TrialBackend, TuneBackend

    backend = InlineBackend()
    assert require(backend, TrialBackend, stage="train") is backend
    with pytest.raises(RuntimeUnavailableError, match="Stage `train` needs TuneBackend") as info:
        require(backend, TuneBackend, stage="train")
    assert "`inline` backend" in info.value.message and "--inline" in (info.value.hint or "")


def test_stage_options_select_the_engine() -> None:
    from pydantic import ValidationError

    from raypipe.training.stage import TrainSearchOptions, training_spec
    from tests.unit.training.data import churn_table

    table, _ = churn_table(200)
    assert TrainSearchOptions().engine == "pool"
    tune_options = TrainSearchOptions(engine="tune", row_fraction=0.25)
    assert training_spec(table, tune_options).row_fraction == 1.0  # ASHA cuts rounds, not rows
    with pytest.raises(ValidationError):
        TrainSearchOptions(engine="spark")  # type: ignore[arg-type]
