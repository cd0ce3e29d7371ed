"""How a run shows progress: rich bars in a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from raypipe.driver import StageRecord

__all__ = ["LogObserver", "RichObserver", "make_observer"]

logger = logging.getLogger("raypipe.run")


class LogObserver:
    """Plain log lines: one per stage boundary, task progress at most every few seconds."""

    def __init__(self, every_seconds: float = 5.0) -> None:
        self.every_seconds = every_seconds
        self._last: dict[str, float] = {}

    def stage_started(self, name: str, kind: str) -> None:
        logger.info("stage %s (%s) started", name, kind)

    def stage_progress(self, name: str, task: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - self._last.get(name, 0.0) >= self.every_seconds:
            self._last[name] = now
            logger.info("stage %s: %s %d/%d", name, task, done, total)

    def stage_finished(self, record: StageRecord) -> None:
        logger.info(
            "stage %s %s in %.1f s (%d rows out)",
            record.name,
            record.status,
            record.seconds,
            record.rows_out,
        )


class RichObserver:
    """One progress bar per stage, advancing with its Ray tasks."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<14}"),
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage_started(self, name: str, kind: str) -> None:
        with self._lock:
            self._tasks[name] = self.progress.add_task(kind, stage=name, total=None)

    def stage_progress(self, name: str, task: str, done: int, total: int) -> None:
        with self._lock:
            if name in self._tasks:
                self.progress.update(
                    self._tasks[name], description=task, completed=done, total=total
                )

    def stage_finished(self, record: StageRecord) -> None:
        with self._lock:
            task_id = self._tasks.get(record.name)
            if task_id is None:
                task_id = self._tasks[record.name] = self.progress.add_task(
                    record.kind, stage=record.name, total=1
                )
            total = self.progress.tasks[task_id].total or 1
            self.progress.update(task_id, description=record.status, completed=total, total=total)


def make_observer(console: Console) -> LogObserver | RichObserver:
    return RichObserver(console) if console.is_terminal else LogObserver()
