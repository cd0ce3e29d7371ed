"""Entrypoint of the cluster test job: ``raypipe`` with this folder's stage kinds registered.

Stands in for ``raypipe run`` because the stage registry is a static table. For the tests it
writes the driver's pid (to kill the driver) and, at the end, whether its working directory
(the job's unpacked working_dir) still exists.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from cluster_stages import KINDS

import raypipe.cli.main as cli_main
import raypipe.spec.loading as loading
from raypipe.stages import registry

registry.STAGE_KINDS.update(KINDS)
loading.STAGE_KINDS = registry.STAGE_KINDS
pid_file = os.environ.get("RAYPIPE_TEST_DRIVER_PID_FILE")
if pid_file:
    Path(pid_file).write_text(str(os.getpid()))
# Only `run` is needed; other areas' command modules may be missing in a partial checkout.
cli_main.COMMAND_MODULES = tuple(
    name for name in cli_main.COMMAND_MODULES if importlib.util.find_spec(name)
)
try:
    cli_main.main(sys.argv[1:])
finally:
    cwd_file = os.environ.get("RAYPIPE_TEST_CWD_FILE")
    if cwd_file:
        try:
            state = "exists" if os.path.isdir(os.getcwd()) else "gone"
        except FileNotFoundError:
            state = "gone"
        Path(cwd_file).write_text(state)
