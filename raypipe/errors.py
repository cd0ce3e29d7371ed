"""The error tree of raypipe.

Every failure a user can cause or fix is a :class:`RaypipeError`. Each subclass carries the
process exit code the CLI uses, and renders as a short message that says what went wrong, where
(a spec key, a file, a column, in backticks), what was expected and received, and a ``Hint:``.

::

    RaypipeError                      exit 1
    ├── SpecError                     exit 2   the job spec or a command's options are invalid
    ├── DataError                     exit 3   input data is missing, unreadable or malformed
    │   ├── StorageError                       storage unreachable: credentials, bucket, permissions
    │   ├── DatasetNotCommittedError           a dataset has no manifest, or files it lists are gone
    │   └── SchemaError                        columns or types differ from what is declared
    ├── StageError                    exit 4   a stage failed while running
    │   └── TaskError                          a Ray task raised; carries the worker's log
    ├── RuntimeUnavailableError       exit 5   Ray could not be started or reached
    ├── ModelError                    exit 6   a model is missing, corrupt or fails its checksum
    └── RunInterruptedError         exit 130   stopped by Ctrl-C (SIGINT; 143 for SIGTERM)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DataError",
    "DatasetNotCommittedError",
    "ModelError",
    "RaypipeError",
    "RunInterruptedError",
    "RuntimeUnavailableError",
    "SchemaError",
    "SpecError",
    "StageError",
    "StorageError",
    "TaskError",
]


class RaypipeError(Exception):
    """Root of every error raypipe raises on purpose.

    Parameters
    ----------
    message
        What went wrong and where, one or a few sentences.
    hint
        How to fix it; rendered on its own line after ``Hint:``.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message


class SpecError(RaypipeError):
    """The job spec (or a command's options) is invalid.

    Holds every problem found, so a user fixes them all in one pass.
    """

    exit_code = 2

    def __init__(
        self,
        problems: Sequence[str],
        *,
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in `{source}`" if source else ""
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{count} {noun}{where}:"] + [f"  - {problem}" for problem in self.problems]
        super().__init__("\n".join(lines), hint=hint)


class DataError(RaypipeError):
    """Input data is missing, unreadable or malformed."""

    exit_code = 3


class StorageError(DataError):
    """A storage location cannot be reached, read or written: credentials, bucket, permissions."""


class DatasetNotCommittedError(DataError):
    """A dataset has no committed manifest, or a file its manifest lists is missing or altered."""


class SchemaError(DataError):
    """Columns or types differ from what was declared or expected."""


class StageError(RaypipeError):
    """A stage failed while running."""

    exit_code = 4


class TaskError(StageError):
    """A Ray task raised. Carries the remote traceback and the log lines the task emitted."""

    def __init__(
        self,
        message: str,
        *,
        remote_traceback: str = "",
        log_lines: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.remote_traceback = remote_traceback
        self.log_lines = list(log_lines)


class RuntimeUnavailableError(RaypipeError):
    """Ray could not be started, or the cluster at the given address could not be reached."""

    exit_code = 5


class ModelError(RaypipeError):
    """A model is missing, corrupt, of an unknown format, or fails its checksum."""

    exit_code = 6


class RunInterruptedError(RaypipeError):
    """The run was stopped by a signal; exits ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM)."""

    exit_code = 130

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 130) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code
