from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from raypipe.cli.models import register
from raypipe.errors import ModelError
from raypipe.tracking.audit import AuditLog, content_hash
from raypipe.tracking.store import audit_path
from raypipe.tracking.verify import verify_audit
from tests.support.registry import AuditOnlyRegistry


def _trail(data_dir: Path) -> AuditLog:
    log = AuditLog(audit_path(str(data_dir)))
    registry = AuditOnlyRegistry(log)
    for n in range(3):
        version = registry.add_version("churn")
        registry.promote("churn", version, reason=f"promote {n}", who="ann")
        log.append_next(
            model="churn",
            stream="development",
            alias="development",
            action="register",
            from_version=None,
            to_version=version,
            reason=f"trained {n}",
        )
    return log


def _entry(log: AuditLog, stream: str, sequence: int) -> Path:
    return Path(log.root) / "churn" / stream / f"{sequence:010d}.json"


def test_entries_are_chained(tmp_path: Path) -> None:
    log = _trail(tmp_path)
    first, second = (json.loads(_entry(log, "champion", n).read_text()) for n in (1, 2))
    assert first["prev_hash"] is None and first["hash"] == content_hash(first)
    assert second["prev_hash"] == first["hash"]
    report = verify_audit(log)
    assert report.ok and report.entries == 6 and report.unchained == 0
    assert report.heads["churn/champion"] == (
        3,
        json.loads(_entry(log, "champion", 3).read_text())["hash"],
    )


def test_cli_verify_reports_an_edited_and_a_deleted_entry_with_their_location(
    tmp_path: Path,
) -> None:
    log = _trail(tmp_path)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    args = ["models", "audit", "churn", "--verify", "--no-witness", "--data-dir", str(tmp_path)]
    clean = runner.invoke(app, args)
    assert clean.exit_code == 0, clean.output
    assert "6 entries checked, 0 written before chaining, 0 problems" in clean.output

    edited = _entry(log, "champion", 2)
    record = json.loads(edited.read_text())
    record["to_version"] = "3"  # someone points the history elsewhere
    edited.write_text(json.dumps(record))
    deleted = _entry(log, "development", 2)
    deleted.unlink()

    result = runner.invoke(app, args)
    assert isinstance(result.exception, ModelError)
    lines = result.output.splitlines()
    assert any(
        line.startswith("edited: `churn/champion` entry 2") and str(edited) in line
        for line in lines
    ), result.output
    assert any(line.startswith("broken-link: `churn/champion` entry 3") for line in lines)
    assert any(
        line.startswith("missing: `churn/development` entry 2") and "deleted" in line
        for line in lines
    ), result.output
    assert "3 problems" in result.output


def test_an_edit_that_rewrites_its_own_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = _trail(tmp_path)
    path = _entry(log, "champion", 1)
    record = json.loads(path.read_text())
    record["who"] = "mallory"
    record["hash"] = content_hash(record)
    path.write_text(json.dumps(record))
    problems = verify_audit(log, "churn").problems
    assert [(p.kind, p.stream, p.sequence) for p in problems] == [("broken-link", "champion", 2)]


def test_deleting_the_newest_entry_is_caught_by_the_registry_witness(tmp_path: Path) -> None:
    log = _trail(tmp_path)
    newest = _entry(log, "champion", 3)
    witnesses = {"churn": {"raypipe.audit.champion.000003": newest.read_text()}}
    assert verify_audit(log, witnesses=witnesses).ok
    newest.unlink()
    assert verify_audit(log).ok  # the chain alone cannot see a cut-off tail
    problems = verify_audit(log, witnesses=witnesses).problems
    assert [(p.kind, p.stream, p.sequence) for p in problems] == [("witness", "champion", 3)]


def test_entries_written_before_chaining_are_counted_not_failed(tmp_path: Path) -> None:
    log = _trail(tmp_path)
    path = _entry(log, "champion", 1)
    record = json.loads(path.read_text())
    for key in ("hash", "prev_hash", "details"):
        record.pop(key)
    path.write_text(json.dumps(record))
    second = _entry(log, "champion", 2)
    chained = json.loads(second.read_text())
    chained["prev_hash"] = content_hash(record)
    chained["hash"] = content_hash(chained)
    second.write_text(json.dumps(chained))
    report = verify_audit(log)
    # Entry 3 still points at entry 2's old hash: re-chaining one entry shows downstream.
    assert report.unchained == 1
    assert [(p.kind, p.sequence) for p in report.problems] == [("broken-link", 3)]


def test_the_trail_on_an_fsspec_store_verifies_and_reports_tampering() -> None:
    import uuid

    import fsspec

    root = f"memory://audit-{uuid.uuid4().hex[:8]}"
    log = AuditLog(root)
    registry = AuditOnlyRegistry(log)
    for n in range(3):
        registry.promote("churn", registry.add_version("churn"), reason=f"p{n}", who="ann")
    assert verify_audit(log).ok and verify_audit(log).entries == 3
    fs = fsspec.filesystem("memory")
    path = f"{root}/churn/champion/{2:010d}.json"
    record = json.loads(fs.cat_file(path))
    record["reason"] = "rewritten"
    fs.pipe_file(path, json.dumps(record).encode())
    kinds = [(p.kind, p.sequence) for p in verify_audit(log).problems]
    assert kinds == [("edited", 2), ("broken-link", 3)]
