"""An interrupt during ``train.search`` registers and promotes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from raypipe.engine.inline import InlineBackend
from raypipe.errors import RunInterruptedError
from raypipe.io.dataset import write_dataset
from raypipe.stages.base import CancelToken, DatasetInput, StageContext
from raypipe.tracking.store import audit_path
from raypipe.training.stage import TrainSearchOptions, TrainSearchStage
from tests.unit.training.data import churn_table


def test_a_search_interrupted_before_it_ends_registers_nothing(tmp_path: Path) -> None:
    table, _ = churn_table(400)
    url = str(tmp_path / "in" / "data")
    data = DatasetInput(url, write_dataset(url, table))
    token = CancelToken()
    token.cancel("SIGINT")  # Ctrl-C while the search ran: it finishes its trial, then stops
    context = StageContext(
        stage_name="train",
        data_dir=str(tmp_path),
        run_id="r",
        backend=InlineBackend(),
        cancel_token=token,
    )
    options = TrainSearchOptions(trials={"logistic": 1}, candidates=["logistic"], model_name="m")
    with pytest.raises(RunInterruptedError, match=r"stage `train` interrupted \(SIGINT\)"):
        TrainSearchStage().run(context, {"data": data}, options)
    assert not Path(audit_path(str(tmp_path))).exists(), "nothing registered or promoted"
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "datasets" / "train").exists()
