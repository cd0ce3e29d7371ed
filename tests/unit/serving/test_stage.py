from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.errors import SpecError
from raypipe.serving.stage import DeployOptions, DeployStage
from raypipe.stages.base import StageContext
from raypipe.stages.registry import load_stage


def test_serve_deploy_is_a_known_kind_and_needs_a_model(tmp_path: Path) -> None:
    assert load_stage("serve.deploy") is DeployStage
    context = StageContext("deploy", str(tmp_path), "run-1", backend=None)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"needs `with\.model`"):
        DeployStage().run(context, {}, DeployOptions(name="fraud"))
    with pytest.raises(ValueError, match="extra"):
        DeployOptions(name="fraud", replicas=3)  # type: ignore[call-arg]


def test_serve_deploy_in_an_inline_run_asks_for_ray(tmp_path: Path) -> None:
    from raypipe.engine.inline import InlineBackend
    from raypipe.errors import RuntimeUnavailableError

    context = StageContext("deploy", str(tmp_path), "run-1", backend=InlineBackend())
    options = DeployOptions(name="fraud", model="models:/fraud@champion")
    with pytest.raises(RuntimeUnavailableError, match=r"needs ServingBackend.*`inline` backend"):
        DeployStage().run(context, {}, options)
    assert list(tmp_path.iterdir()) == []  # nothing recorded for a service never started
