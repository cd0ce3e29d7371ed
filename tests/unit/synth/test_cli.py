"""``raypipe generate``: options are checked before Ray starts."""

from __future__ import annotations

import pytest

from raypipe.cli.main import main


def test_generate_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    main(["generate", "--help"])
    out = capsys.readouterr().out
    for option in ("--players", "--days", "--seed", "--out", "--shard-players", "--address"):
        assert option in out


def test_invalid_options_fail_before_ray_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--out", "memory://nowhere", "--players", "0", "--cutoff", "soon"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "`--players`" in err and "`--cutoff`" in err
