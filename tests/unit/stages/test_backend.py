"""The backend contract: one per process, a view per stage, capabilities asked by protocol."""

from __future__ import annotations

import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import RuntimeUnavailableError
from raypipe.federated.backend import FederationBackend
from raypipe.inference.pool import ScoringBackend
from raypipe.stages.backend import Backend, require
from raypipe.stages.base import CancelToken, StageContext
from raypipe.training.search import TrialBackend, TuneBackend


def test_the_context_executor_is_the_backend_itself() -> None:
    backend = InlineBackend()
    context = StageContext("s", "/tmp/d", "r", backend=backend)
    assert context.executor is backend and context.backend is backend
    assert context.executor.map(lambda x: x * 2, [1, 2], name="double") == [2, 4]


def test_a_stage_view_has_its_own_progress_and_the_runs_cancel_token() -> None:
    seen: list[tuple[str, int, int]] = []
    token = CancelToken()
    view = InlineBackend().for_stage(lambda *event: seen.append(event), token)
    assert isinstance(view, Backend)
    view.map(str, [1, 2], name="t")
    assert seen == [("t", 1, 2), ("t", 2, 2)]
    token.cancel("SIGINT")
    with pytest.raises(Exception, match="interrupted"):
        view.map(str, [1], name="t")


def test_the_in_process_backend_has_every_capability_but_tune() -> None:
    backend = InlineBackend()
    for capability in (TrialBackend, ScoringBackend, FederationBackend):
        assert require(backend, capability, stage="s") is backend
    assert not isinstance(backend, TuneBackend)


def test_a_missing_capability_names_the_stage_the_capability_and_the_backend() -> None:
    with pytest.raises(RuntimeUnavailableError) as info:
        require(InlineBackend(), TuneBackend, stage="train")
    message = info.value.message
    assert message.startswith("Stage `train` needs TuneBackend (Ray Tune searches")
    assert "`inline` backend" in message
