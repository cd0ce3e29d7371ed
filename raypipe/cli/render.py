"""Rendering of run records and plans for the terminal."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from raypipe.driver import RunRecord, StageStatus
from raypipe.spec import Job

__all__ = ["mlflow_ui_lines", "plan_tree", "run_table"]

#: Where ``mlflow ui`` serves when started with the command :func:`mlflow_ui_lines` prints.
MLFLOW_UI = "http://127.0.0.1:5000"

_STATUS_STYLE = {
    StageStatus.SUCCEEDED: "green",
    StageStatus.CACHED: "cyan",
    StageStatus.FAILED: "bold red",
    StageStatus.SKIPPED: "yellow",
}


def run_table(record: RunRecord) -> Group:
    """A table of stages (status, cache, seconds, rows, nodes), then each stage's outputs with
    their versions and its metrics."""
    title = f"run {record.run_id} — {record.job}: {record.status}"
    table = Table(title=title, title_justify="left")
    numeric = ("s", "rows in", "rows out", "nodes")
    for column in ("stage", "kind", "status", *numeric):
        table.add_column(column, justify="right" if column in numeric else "left", no_wrap=True)
    details: list[Text] = []
    for stage in record.stages.values():
        style = _STATUS_STYLE.get(stage.status, "")
        table.add_row(
            stage.name,
            stage.kind,
            f"[{style}]{stage.status}[/]" if style else stage.status,
            f"{stage.seconds:.1f}",
            f"{stage.rows_in:,}",
            f"{stage.rows_out:,}",
            str(len(stage.node_ids)),
        )
        outputs = "  ".join(f"{name}@{out.version[:12]}" for name, out in stage.outputs.items())
        metrics = "  ".join(f"{key}={_short(value)}" for key, value in stage.metrics.items())
        line = Text(f"{stage.name}: ", style="bold")
        line.append(outputs or "(no outputs)")
        if metrics:
            line.append(f"\n  {metrics}", style="dim")
        if stage.error:
            line.append(f"\n  {stage.error.splitlines()[0]}", style="red")
        details.append(line)
    return Group(table, *details)


def plan_tree(job: Job) -> Tree:
    """The stage DAG in run order, each stage with its kind, inputs and outputs."""
    tree = Tree(f"[bold]{job.name}[/]  data_dir={job.data_dir}")
    for stage in job.stages:
        node = tree.add(f"[bold]{stage.name}[/]  ({stage.kind})")
        for name, ref in stage.inputs.items():
            node.add(f"<- {name} = {ref}")
        for output in stage.stage_class.outputs:
            node.add(f"-> {output}")
    return tree


def mlflow_ui_lines(tracking_uri: str, mlflow_run_id: str | None, mlflow_bin: str) -> list[str]:
    """How to open a training run's experiment: the command that serves the UI, then the page.

    The page is the experiment's list of runs (found from the run id); without it, the UI's
    home page.
    """
    from raypipe.redaction import redact_url

    store = redact_url(tracking_uri)  # printed: never the password
    command = f"{mlflow_bin} ui --backend-store-uri {store} --host 127.0.0.1 --port 5000"
    page = MLFLOW_UI
    if mlflow_run_id:
        try:
            from raypipe.tracking.store import get_client

            run = get_client(tracking_uri).get_run(mlflow_run_id)
            page = f"{MLFLOW_UI}/#/experiments/{run.info.experiment_id}/runs"
        except Exception:  # the link is a convenience: the command alone still works
            page = MLFLOW_UI
    import importlib.util

    if importlib.util.find_spec("flask") is None:
        # mlflow-skinny tracks and registers; serving the UI needs the full package.
        command = f"pip install 'raypipe[ui]' && {command}"
    return [command, f"then open {page}"]


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
