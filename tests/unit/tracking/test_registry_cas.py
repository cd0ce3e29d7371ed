"""The registry is compare-and-set: concurrent promotes never lose or fake a previous version."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from raypipe.tracking.audit import AuditLog, ConcurrentChangeError
from raypipe.tracking.registry import CHAMPION, Registry
from raypipe.tracking.store import default_tracking_uri

WRITERS = 8


def _registry_with_versions(tmp_path: Path, audit_root: str, count: int) -> Registry:
    registry = Registry(default_tracking_uri(str(tmp_path / "store")), AuditLog(audit_root))
    registry.client.create_registered_model("cas")
    for _ in range(count):
        registry.client.create_model_version("cas", source=str(tmp_path), run_id=None)
    return registry


def _race(registry: Registry, versions: list[str], **promote: object) -> tuple[list, list]:
    """Promote ``versions`` at once, each from its own thread and MLflow client."""
    barrier = threading.Barrier(len(versions))
    won: list[str] = []
    lost: list[BaseException] = []

    def promote_one(version: str) -> None:
        own = Registry(registry.tracking_uri, registry.audit)
        barrier.wait()
        try:
            own.promote("cas", version, reason=f"to {version}", who=f"w{version}", **promote)
            won.append(version)
        except ConcurrentChangeError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=promote_one, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return won, lost


def _chain(registry: Registry) -> list[tuple[str | None, str | None]]:
    entries = [e for e in registry.audit.read("cas") if e.alias == CHAMPION]
    assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
    return [(e.from_version, e.to_version) for e in entries]


@pytest.mark.slow
def test_eight_promotes_expecting_the_same_champion_exactly_one_wins(tmp_path: Path) -> None:
    registry = _registry_with_versions(tmp_path, "memory://cas-expect/audit", WRITERS + 1)
    registry.promote("cas", "1", reason="first")
    won, lost = _race(registry, [str(v) for v in range(2, WRITERS + 2)], expected_previous="1")
    assert len(won) == 1 and len(lost) == WRITERS - 1
    assert all("nothing was changed" in str(exc) for exc in lost)
    assert all("Hint: check the current state" in str(exc) for exc in lost)
    assert registry.alias_version("cas", CHAMPION) == won[0]
    assert _chain(registry) == [(None, "1"), ("1", won[0])]
    rolled = registry.rollback("cas", reason="undo")
    assert (rolled.from_version, rolled.to_version) == (won[0], "1")
    assert registry.alias_version("cas", CHAMPION) == "1"


@pytest.mark.slow
def test_eight_concurrent_promotes_keep_one_consistent_chain(tmp_path: Path) -> None:
    registry = _registry_with_versions(tmp_path, str(tmp_path / "audit"), WRITERS + 1)
    registry.promote("cas", "1", reason="first")
    won, lost = _race(registry, [str(v) for v in range(2, WRITERS + 2)])
    assert len(won) + len(lost) == WRITERS and won
    assert all("changed by another writer" in str(exc) for exc in lost)
    chain = _chain(registry)
    # Every entry starts where the one before ended: no 4 -> 4 no-op, no invented "from".
    assert all(prev[1] == this[0] for prev, this in itertools.pairwise(chain))
    assert sorted(to for _, to in chain[1:]) == sorted(won)
    assert registry.alias_version("cas", CHAMPION) == chain[-1][1]
    rolled = registry.rollback("cas", reason="undo the last")
    assert (rolled.from_version, rolled.to_version) == (chain[-1][1], chain[-1][0])
    assert registry.alias_version("cas", CHAMPION) == chain[-1][0]


@pytest.mark.slow
def test_promote_over_an_unexpected_champion_changes_nothing(tmp_path: Path) -> None:
    registry = _registry_with_versions(tmp_path, str(tmp_path / "audit"), 3)
    registry.promote("cas", "1", reason="first")
    with pytest.raises(ConcurrentChangeError, match="is at version `1`, not the expected `2`"):
        registry.promote("cas", "3", reason="stale view", expected_previous="2")
    assert registry.alias_version("cas", CHAMPION) == "1"
    assert _chain(registry) == [(None, "1")]


@pytest.mark.slow
def test_a_lagging_mlflow_alias_follows_the_log(tmp_path: Path) -> None:
    registry = _registry_with_versions(tmp_path, str(tmp_path / "audit"), 2)
    registry.promote("cas", "1", reason="first")
    # A writer that died between its audit entry and its MLflow call left the alias behind.
    registry.audit.append(
        model="cas",
        alias=CHAMPION,
        action="promote",
        from_version="1",
        to_version="2",
        reason="died",
        sequence=2,
    )
    assert registry.alias_version("cas", CHAMPION) == "1"
    assert registry.sync_alias("cas", CHAMPION) == "2"
    assert registry.alias_version("cas", CHAMPION) == "2"
    assert registry.rollback("cas", reason="back").to_version == "1"


def test_audit_log_on_s3_creates_each_entry_once() -> None:
    from tests.support.s3 import moto_s3

    with moto_s3() as s3:
        s3.create_bucket("audit-bucket")
        log = AuditLog("s3://audit-bucket/data/registry/audit", s3.storage_options)
        kwargs = {"model": "m/odd name", "alias": CHAMPION, "action": "promote", "reason": "r"}
        log.append(from_version=None, to_version="1", sequence=1, **kwargs)
        with pytest.raises(ConcurrentChangeError):
            log.append(from_version=None, to_version="2", sequence=1, **kwargs)
        log.append(from_version="1", to_version="3", sequence=2, **kwargs)
        assert log.head("m/odd name", CHAMPION)[1].to_version == "3"  # type: ignore[union-attr]
        assert [(e.from_version, e.to_version) for e in log.read()] == [(None, "1"), ("1", "3")]
        import fsspec

        fs = fsspec.filesystem("s3", **s3.storage_options)
        assert fs.find("audit-bucket/data/registry/audit") == [
            "audit-bucket/data/registry/audit/m%2Fodd%20name/champion/0000000001.json",
            "audit-bucket/data/registry/audit/m%2Fodd%20name/champion/0000000002.json",
        ]


def test_audit_log_on_memory_lets_one_of_many_threads_create_an_entry() -> None:
    log = AuditLog("memory://race/audit")
    barrier = threading.Barrier(WRITERS)
    outcomes: list[str] = []

    def write(index: int) -> None:
        barrier.wait()
        try:
            log.append(
                model="m",
                alias=CHAMPION,
                action="promote",
                from_version=None,
                to_version=str(index),
                reason="r",
                sequence=1,
            )
            outcomes.append("won")
        except ConcurrentChangeError:
            outcomes.append("lost")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost"] * (WRITERS - 1) + ["won"]
    assert len(log.read("m")) == 1


@pytest.mark.slow
def test_cli_promote_with_expect_current(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from raypipe.cli.models import register
    from raypipe.tracking.store import audit_path

    data_dir = str(tmp_path / "store")
    registry = _registry_with_versions(tmp_path, audit_path(data_dir), 3)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    args = ["--data-dir", data_dir, "--reason", "r"]
    stale = runner.invoke(app, ["models", "promote", "cas", "2", "--expect-current", "1", *args])
    assert stale.exit_code != 0 and isinstance(stale.exception, ConcurrentChangeError)
    assert "not the expected `1`" in str(stale.exception)
    assert registry.alias_version("cas", CHAMPION) is None
    first = runner.invoke(app, ["models", "promote", "cas", "1", "--expect-current", "-", *args])
    assert first.exit_code == 0 and "- -> 1" in first.output
    second = runner.invoke(app, ["models", "promote", "cas", "2", "--expect-current", "1", *args])
    assert second.exit_code == 0 and "1 -> 2" in second.output
    assert _chain(registry) == [(None, "1"), ("1", "2")]
