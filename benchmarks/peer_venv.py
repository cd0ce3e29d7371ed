"""A peer's own virtual environment: created when missing, installed into until its pin is there.

The peers a benchmark compares against (Flower, Feast) never enter raypipe's dependencies: each
runs from a venv of its own, pinned to the release the README's figures were measured with.
:func:`peer_python` is the one way the benchmarks get that interpreter. It trusts the venv only
when the pinned distribution is installed in it, so an install that failed or timed out half-way
(a fresh CI machine, a slow registry) is completed by the next run instead of leaving a venv that
looks ready and is not. It never deletes anything: the path may be one a user handed over with
``FLWR_VENV`` or ``FEAST_VENV``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

__all__ = ["peer_python"]


def peer_python(
    venv: Path, distribution: str, version: str, *, extras: str = "", timeout_s: float = 900
) -> Path:
    """The Python of ``venv`` with ``distribution==version`` installed (``[extras]`` too).

    Raises ``subprocess.SubprocessError`` or ``OSError`` when the venv cannot be made or the
    install fails or runs past ``timeout_s``; callers decide whether the peer is then skipped.
    """
    python = venv / "bin" / "python"
    if python.exists() and _installed_version(python, distribution) == version:
        return python
    started = time.perf_counter()
    requirement = f"{distribution}{f'[{extras}]' if extras else ''}=={version}"
    print(f"installing {requirement} into {venv} (its own venv) ...", flush=True)
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", requirement],
        check=True,
        timeout=timeout_s,
    )
    print(f"installed {requirement} in {time.perf_counter() - started:.0f} s", flush=True)
    return python


def _installed_version(python: Path, distribution: str) -> str | None:
    """The version of ``distribution`` installed for ``python``, or None."""
    probe = (
        "import importlib.metadata as m, sys\n"
        "try:\n"
        f"    print(m.version({distribution!r}))\n"
        "except m.PackageNotFoundError:\n"
        "    sys.exit(1)\n"
    )
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None
