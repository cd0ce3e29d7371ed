"""Verify the hash-chained audit trail: find every edited, deleted or inserted entry.

Walks every stream of every model under the audit root (see :mod:`raypipe.tracking.audit` for
the layout and the chain) and reports each problem with its location (stream, sequence, file):

- ``missing``: a number is skipped (an entry was deleted);
- ``unreadable``: a file is not a JSON entry;
- ``edited``: an entry's content no longer matches its own ``hash``;
- ``broken-link``: an entry's ``prev_hash`` does not match the entry before it (that one was
  edited, even if its ``hash`` was recomputed, or replaced);
- ``misplaced``: an entry's ``model``, ``sequence`` or stream differs from where it is stored;
- ``witness``: the copy the registry keeps as a tag (``raypipe.audit.<stream>.NNNNNN``) differs
  from the entry or names one that is gone, which also catches deleting the newest entry.

Entries written before chaining have no ``hash``; they are counted as unchained, not as errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from raypipe.io.fs import resolve_fs
from raypipe.tracking.audit import AuditLog, content_hash

__all__ = ["AuditProblem", "VerifyReport", "verify_audit"]


@dataclass(frozen=True)
class AuditProblem:
    """One thing wrong with the trail, and where."""

    kind: str
    model: str
    stream: str
    sequence: int
    path: str
    detail: str

    def describe(self) -> str:
        return (
            f"{self.kind}: `{self.model}/{self.stream}` entry {self.sequence} "
            f"({self.path}): {self.detail}"
        )


@dataclass
class VerifyReport:
    """The result of :func:`verify_audit`."""

    entries: int = 0
    unchained: int = 0
    problems: list[AuditProblem] = field(default_factory=list)
    #: ``model/stream`` -> (sequence, hash) of the newest entry, to keep as an outside witness.
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "unchained": self.unchained,
            "problems": [p.__dict__ for p in self.problems],
            "heads": {k: {"sequence": s, "hash": h} for k, (s, h) in self.heads.items()},
        }


def verify_audit(
    audit: AuditLog,
    model: str | None = None,
    *,
    witnesses: Mapping[str, Mapping[str, str]] | None = None,
) -> VerifyReport:
    """Check every entry of ``audit`` (of ``model`` if given).

    Parameters
    ----------
    witnesses
        Per model, the registry's tags ``raypipe.audit.<stream>.NNNNNN`` -> entry JSON
        (:meth:`raypipe.tracking.registry.Registry.audit_witnesses`); optional.
    """
    report = VerifyReport()
    fs, root = resolve_fs(audit.root, audit.storage_options)
    models = [f"{root}/{_quote(model)}"] if model else _ls(fs, root)
    for model_folder in models:
        model_name = unquote(model_folder.rstrip("/").rsplit("/", 1)[-1])
        files_by_stream: dict[str, dict[int, str]] = {}
        for stream_folder in _ls(fs, model_folder):
            stream = unquote(stream_folder.rstrip("/").rsplit("/", 1)[-1])
            files = {}
            for path in _ls(fs, stream_folder):
                name = path.rstrip("/").rsplit("/", 1)[-1]
                if name.endswith(".json") and name[:-5].isdigit():
                    files[int(name[:-5])] = path
            files_by_stream[stream] = files
            _verify_stream(fs, model_name, stream, files, report)
        tags = (witnesses or {}).get(model_name, {})
        _check_witnesses(fs, model_name, files_by_stream, tags, report)
    return report


def _verify_stream(
    fs: Any, model: str, stream: str, files: dict[int, str], report: VerifyReport
) -> None:
    previous_hash: str | None = None
    previous_seen = False
    last = max(files, default=0)
    for sequence in range(1, last + 1):
        path = files.get(sequence)
        if path is None:
            report.problems.append(
                AuditProblem("missing", model, stream, sequence, "-", "entry is gone (deleted)")
            )
            previous_seen = False
            continue
        record = _read(fs, path)
        report.entries += 1
        if record is None:
            report.problems.append(
                AuditProblem("unreadable", model, stream, sequence, path, "not a JSON entry")
            )
            previous_seen = False
            continue
        actual = content_hash(record)
        if "hash" not in record:
            report.unchained += 1
        elif record["hash"] != actual:
            report.problems.append(
                AuditProblem(
                    "edited",
                    model,
                    stream,
                    sequence,
                    path,
                    f"content hashes to {actual[:12]}, the entry says {str(record['hash'])[:12]}",
                )
            )
        linked = "prev_hash" in record and sequence > 1 and previous_seen
        if linked and record["prev_hash"] != previous_hash:
            report.problems.append(
                AuditProblem(
                    "broken-link",
                    model,
                    stream,
                    sequence,
                    path,
                    f"`prev_hash` {str(record['prev_hash'])[:12]} does not match entry "
                    f"{sequence - 1} ({str(previous_hash)[:12]}): that entry was changed",
                )
            )
        if record.get("model") != model or record.get("sequence") != sequence:
            report.problems.append(
                AuditProblem(
                    "misplaced",
                    model,
                    stream,
                    sequence,
                    path,
                    f"entry says model `{record.get('model')}` sequence {record.get('sequence')}",
                )
            )
        previous_hash, previous_seen = actual, True
        report.heads[f"{model}/{stream}"] = (sequence, actual)


def _check_witnesses(
    fs: Any,
    model: str,
    files_by_stream: dict[str, dict[int, str]],
    tags: Mapping[str, str],
    report: VerifyReport,
) -> None:
    for key, text in sorted(tags.items()):
        parts = key.split(".")
        if len(parts) != 4 or not parts[3].isdigit():
            continue
        stream, sequence = parts[2], int(parts[3])
        try:
            witnessed = json.loads(text)
        except json.JSONDecodeError:
            continue
        if "hash" not in witnessed:
            continue  # written before chaining: nothing to compare
        path = files_by_stream.get(stream, {}).get(sequence)
        if path is None:
            report.problems.append(
                AuditProblem(
                    "witness",
                    model,
                    stream,
                    sequence,
                    "-",
                    f"the registry tag `{key}` holds an entry the trail no longer has (deleted)",
                )
            )
            continue
        record = _read(fs, path)
        if record is not None and content_hash(record) != witnessed["hash"]:
            report.problems.append(
                AuditProblem(
                    "witness",
                    model,
                    stream,
                    sequence,
                    path,
                    f"differs from the copy in the registry tag `{key}`",
                )
            )


def _read(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(fs.cat_file(path))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _ls(fs: Any, folder: str) -> list[str]:
    try:
        return sorted(str(p) for p in fs.ls(folder, detail=False))
    except FileNotFoundError:
        return []


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
