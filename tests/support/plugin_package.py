"""A small package outside raypipe that adds stage kinds, as an installed distribution would.

``pip install`` into a throwaway venv takes tens of seconds; what an install leaves that
``importlib.metadata`` reads is a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` beside the package on ``sys.path``. The fixture writes exactly that.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "raypipe_test_plugin"
DISTRIBUTION = "raypipe-test-plugin"

#: The kinds the distribution registers in the ``raypipe.stages`` group.
ENTRY_POINTS = f"""\
[raypipe.stages]
plugin.squares = {PACKAGE}.stages:SquaresStage
plugin.total = {PACKAGE}.stages:TotalStage
"""

STAGES_SOURCE = '''\
"""Stage kinds of a package outside raypipe."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from raypipe.io.dataset import DatasetWriter, read_dataset
from raypipe.stages import Stage, StageOptions, StageResult

#: Tests edit this line to change the stage's code.
OFFSET = 0


class SquaresOptions(StageOptions):
    rows: int = 10
    parts: int = 2


def _write_part(url, rows, parts, part):
    values = range(part * rows // parts, (part + 1) * rows // parts)
    table = pa.table({"value": pa.array([v * v + OFFSET for v in values], pa.int64())})
    return DatasetWriter(url).write(table, part=part)


class SquaresStage(Stage):
    options = SquaresOptions
    outputs: ClassVar[tuple[str, ...]] = ("data",)

    def run(self, context, inputs, options):
        url = context.output_url("data")
        task = partial(_write_part, url, options.rows, options.parts)
        entries = context.executor.map(task, list(range(options.parts)), name="squares")
        manifest = DatasetWriter(url).commit([entry for part in entries for entry in part])
        return StageResult(outputs={"data": manifest}, rows_out=manifest.rows)


class TotalOptions(StageOptions):
    pass


class TotalStage(Stage):
    options = TotalOptions
    inputs: ClassVar[tuple[str, ...]] = ("data",)
    outputs: ClassVar[tuple[str, ...]] = ("total",)

    def run(self, context, inputs, options):
        table = read_dataset(inputs["data"].url)
        total = pa.table({"total": [pc.sum(table["value"]).as_py()]})
        writer = DatasetWriter(context.output_url("total"))
        manifest = writer.commit(writer.write(total, part=0))
        return StageResult(
            outputs={"total": manifest},
            metrics={"total": total["total"][0].as_py()},
            rows_in=inputs["data"].rows,
            rows_out=1,
        )


class VersionedStage(SquaresStage):
    version = "1"


class NotAStage:
    options = SquaresOptions


class LooseOptionsStage(SquaresStage):
    options = dict
'''


@dataclass(frozen=True)
class PluginPackage:
    """Where the fixture wrote the package, and its stages module."""

    root: Path
    stages_file: Path

    def edit(self, old: str, new: str) -> None:
        """Change the stages module's source on disk (the import in this process stays)."""
        text = self.stages_file.read_text()
        assert old in text, f"{old!r} is not in {self.stages_file}"
        self.stages_file.write_text(text.replace(old, new))


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginPackage]:
    """The package and its dist-info on ``sys.path``; forgotten again after the test."""
    root = tmp_path / "site-packages"
    package = root / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stages.py").write_text(STAGES_SOURCE)
    (package / "broken.py").write_text("import raypipe_test_missing_dependency\n")
    dist_info = root / f"{PACKAGE}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(root))  # also invalidates the import caches
    # Edits keep the file's size and may keep its mtime: a cached .pyc would hide them on reload.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    try:
        yield PluginPackage(root=root, stages_file=package / "stages.py")
    finally:
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]
