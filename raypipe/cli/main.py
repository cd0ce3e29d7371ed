"""The ``raypipe`` command: thin commands over the library, one error handler for all."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from raypipe.cli.boundary import explain
from raypipe.cli.consoles import console, error_console
from raypipe.cli.options import SetOption
from raypipe.errors import RaypipeError

__all__ = ["app", "main"]

app = typer.Typer(
    name="raypipe",
    help="Machine-learning pipelines as Ray jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules that add commands with ``register(app)``; one line per area.
COMMAND_MODULES: tuple[str, ...] = (
    "raypipe.cli.run",
    "raypipe.cli.generate",
    "raypipe.cli.data",
    "raypipe.cli.features",
    "raypipe.cli.monitor",
    "raypipe.cli.models",
    "raypipe.cli.infer",
    "raypipe.cli.submit",
    "raypipe.cli.watch",
    "raypipe.cli.serve",
)


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help="The job's YAML file.")],
    set_: SetOption = None,
) -> None:
    """Check a job spec and list every problem at once."""
    from raypipe.spec import load_job

    job = load_job(spec, overrides=set_ or ())
    console.print(
        f"[green]ok[/]: `{spec}` is a valid job `{job.name}` with {len(job.stages)} stages"
    )


@app.command()
def plan(
    spec: Annotated[Path, typer.Argument(help="The job's YAML file.")],
    set_: SetOption = None,
) -> None:
    """Print the stage DAG of a job without running it."""
    from raypipe.cli.render import plan_tree
    from raypipe.spec import load_job

    console.print(plan_tree(load_job(spec, overrides=set_ or ())))


@app.command()
def version() -> None:
    """Print raypipe's version."""
    import raypipe

    console.print(raypipe.__version__)


@functools.cache
def _register_commands() -> None:
    """Once per process: ``main`` runs many times in one test session, and typer keeps every
    command added (repeated groups made each call slower than the last)."""
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


def _configure_logging(debug: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO
    if error_console.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=error_console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    from raypipe.redaction import RedactingFilter

    handler.addFilter(RedactingFilter())  # no password or URL signature in any log line
    # MLflow logs its own INFO lines (creating database tables) through its own handler.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("raypipe").setLevel(level)
    # Ray warns on every local start that it turned token authentication on by default (the
    # safe setting raypipe keeps): nothing a user can act on, so that one line is dropped.
    ray_auth = logging.getLogger(_RAY_TOKEN_AUTH_LOGGER)
    if not any(isinstance(f, _RayTokenAuthEnabledFilter) for f in ray_auth.filters):
        ray_auth.addFilter(_RayTokenAuthEnabledFilter())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, as :data:`logging.lastResort` does: a
    caller that swaps the stream per call (pytest's capture, an embedding app) must not leave
    the handler writing to a closed one."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # StreamHandler.__init__ sets it; the property always answers the current one


_RAY_TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _RayTokenAuthEnabledFilter(logging.Filter):
    """Drops Ray's "Token authentication is enabled for this Ray cluster" notice, only that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def render_error(exc: RaypipeError, *, debug: bool) -> None:
    """Print a raypipe error as the user should see it: message, hint, worker log lines."""
    from raypipe.errors import TaskError

    cause = getattr(exc, "first_error", exc)
    if isinstance(cause, TaskError) and cause.log_lines:
        error_console.print("[dim]worker log (last lines):[/]")
        for line in cause.log_lines:
            error_console.print(f"  [dim]{line}[/]", markup=False, highlight=False)
    if debug and isinstance(cause, TaskError) and cause.remote_traceback:
        error_console.print(cause.remote_traceback, markup=False, highlight=False)
    from raypipe.redaction import redact_text

    message = redact_text(exc.message)  # an error names URLs; never their secrets
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if exc.hint:
        hint = redact_text(exc.hint)
        error_console.print(f"[yellow]Hint:[/] {hint}", highlight=False, soft_wrap=True)


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the runtime's ``finally`` shuts Ray down.

    A Ray driver killed by a plain SIGTERM leaves its workers orphaned; unwinding the stack
    instead runs ``ray.shutdown()`` and writes the run record as failed.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``raypipe`` console script."""
    _interrupt_on_sigterm()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("RAYPIPE_DEBUG") == "1"
    args = [arg for arg in args if arg != "--debug"]
    _configure_logging(debug)
    _register_commands()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="raypipe", standalone_mode=False)
        # Not standalone, typer returns (not raises) the code of `typer.Exit` and of Ctrl-C
        # (130); a command itself returns None.
        if isinstance(code, int) and code:
            sys.exit(code)
    except RaypipeError as exc:
        if debug:
            error_console.print_exception()
        render_error(exc, debug=debug)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except typer.exceptions.TyperException as exc:
        # Usage errors are typer's vendored click exceptions, which print themselves with the
        # usage line; the public base class has no `show`.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            error_console.print(
                f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False
            )
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):
        error_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # the boundary: a library's failure, said once
        if debug:
            error_console.print_exception()
        explained = explain(exc, args)
        render_error(explained, debug=debug)
        sys.exit(explained.exit_code)


if __name__ == "__main__":
    main()
