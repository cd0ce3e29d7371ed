"""``raypipe infer`` scores in this process unless a flag (or ``RAY_ADDRESS``) asks for Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.cli.main import main
from raypipe.io.dataset import read_dataset
from tests.unit.inference.data import oracle_scores, train_model, write_files


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    model = train_model(tmp_path / "model.ubj")
    write_files(tmp_path / "in", files=2, rows=300)
    return [
        "infer",
        "--model",
        str(model),
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--id-columns",
        "player_id",
        *extra,
    ]


def test_without_a_flag_it_scores_in_this_process(
    tmp_path: Path, no_ray: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    main(_argv(tmp_path))
    assert no_ray == []
    assert "scoring in this process on all its CPUs" in capsys.readouterr().out
    table = read_dataset(str(tmp_path / "out"))
    expected = oracle_scores(tmp_path / "model.ubj", tmp_path / "in")
    got = dict(zip(table["player_id"].to_pylist(), table["score"].to_pylist(), strict=True))
    assert sorted(got) == sorted(expected)
    np.testing.assert_allclose([got[k] for k in sorted(got)], [expected[k] for k in sorted(got)])


@pytest.mark.parametrize("flag", [["--actors", "1"], ["--address", "auto"]])
def test_a_flag_asks_for_ray_whatever_the_size(
    tmp_path: Path, no_ray: list[str], flag: list[str]
) -> None:
    with pytest.raises((RuntimeError, SystemExit)):
        main(_argv(tmp_path, *flag))
    assert no_ray == ["start"]


def test_ray_address_in_the_environment_asks_for_ray(
    tmp_path: Path, no_ray: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    with pytest.raises((RuntimeError, SystemExit)):
        main(_argv(tmp_path))
    assert no_ray == ["start"]


def test_ctrl_c_while_scoring_exits_130_and_says_how_to_resume(
    tmp_path: Path,
    no_ray: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import raypipe.inference.pool as pool

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pool, "score_on_pool", interrupted)
    with pytest.raises(SystemExit) as info:
        main(_argv(tmp_path))
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "nothing was committed" in err and "--resume" in err
