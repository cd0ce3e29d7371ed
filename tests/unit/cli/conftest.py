"""Fixtures of the CLI's unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records (and refuses) any attempt to start or join Ray."""
    from raypipe.engine import runtime

    attempts: list[str] = []

    def refuse(self: object) -> None:
        attempts.append("start")
        raise RuntimeError("this test must not start Ray")

    monkeypatch.setattr(runtime.RayRuntime, "start", refuse)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return attempts
