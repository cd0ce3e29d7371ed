from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.errors import SpecError
from raypipe.serving.stage import DeployOptions, DeployStage
from raypipe.stages.base import StageContext
from raypipe.stages.registry import load_stage


def test_serve_deploy_is_a_known_kind_and_needs_a_model(tmp_path: Path) -> None:
    assert load_stage("serve.deploy") is DeployStage
    context = StageContext("deploy", str(tmp_path), "run-1", executor=None)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"needs `with\.model`"):
        DeployStage().run(context, {}, DeployOptions(name="fraud"))
    with pytest.raises(ValueError, match="extra"):
        DeployOptions(name="fraud", replicas=3)  # type: ignore[call-arg]
