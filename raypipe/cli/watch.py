"""``raypipe watch JOB.yaml``: evaluate the triggers on each new period and retrain by the job.

The job spec's ``lifecycle:`` section holds the policy (:mod:`raypipe.tracking.policy`) and its
``watch:`` part: ``periods``, a folder with one committed dataset per period (features, the label
when known; named so they sort in time order), and ``retrain_set``, the ``--set`` overrides of a
retraining run (``{period}`` expands to the period's name). Each pass lists the periods, hands
every one not yet processed to :class:`raypipe.tracking.continual.WatchLoop`, and when a trigger
fires outside the cool-down runs the job through the normal run path (``raypipe run``: a local
Ray, or ``watch.address``'s cluster) or, with ``--submit``, as a Ray job on the cluster. The
job's ``train.search`` stage must register the model and leave promotion to the lifecycle
(``gate: {promote: false}``); the loop then challenges, and requests the promotion.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import typer

from raypipe.cli.options import SpecDataDirOption, TrackingUriOption
from raypipe.errors import SpecError, StageError

__all__ = ["JobRetrainer", "list_periods", "register"]

logger = logging.getLogger(__name__)


def list_periods(folder: str) -> list[Any]:
    """The committed datasets directly under ``folder`` as periods, oldest first.

    A period starts at its manifest's ``cutoff`` metadata when set, else when it was committed.
    """
    from raypipe.io.dataset import read_dataset
    from raypipe.io.fs import join_url, resolve_fs
    from raypipe.io.manifest import read_manifest
    from raypipe.tracking.continual import Period

    fs, root = resolve_fs(folder)
    try:
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        return []
    periods = []
    for name in names:
        url = join_url(folder, name)
        try:
            manifest = read_manifest(url)
        except Exception:  # not a committed dataset (yet): a period still being written
            continue
        stamp = str(manifest.metadata.get("cutoff") or manifest.created_at)
        start = dt.datetime.fromisoformat(stamp)
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
        periods.append(Period(name, start, read_dataset(url)))
    return sorted(periods, key=lambda p: (p.start, p.name))


class JobRetrainer:
    """Retrain by running the job; score registered versions with their stored encoding."""

    def __init__(
        self,
        spec: Path,
        model_name: str,
        *,
        overrides: tuple[str, ...],
        data_dir: str | None,
        tracking_uri: str,
        address: str | None,
        submit: bool,
    ) -> None:
        from raypipe.tracking.audit import AuditLog
        from raypipe.tracking.registry import Registry
        from raypipe.tracking.store import audit_path

        self.spec = spec
        self.model_name = model_name
        self.overrides = overrides
        self.data_dir = data_dir
        self.tracking_uri = tracking_uri
        self.address = address
        self.submit = submit
        self.registry = Registry(tracking_uri, AuditLog(audit_path(data_dir)))
        self.period = ""

    def retrain(self, train: pa.Table, *, champion: str | None) -> dict[str, Any]:
        """Run the job (its own data sources; ``train`` is not passed on); the new version."""
        before = self._latest()
        overrides = [o.replace("{period}", self.period) for o in self.overrides]
        if self.submit:
            self._submit(overrides)
        else:
            from raypipe.cli.run import run_spec
            from raypipe.spec import load_job

            job = load_job(self.spec, overrides=overrides, data_dir=self.data_dir)
            run_spec(job, address=self.address, resume=False, force=[])
        after = self._latest()
        if after is None or after == before:
            raise StageError(
                f"the retraining run of `{self.spec}` registered no new version of "
                f"`{self.model_name}`",
                hint=f"its `train.search` stage needs `model_name: {self.model_name}`",
            )
        return {"scratch": after}  # a job retrains from scratch; warm start is in-process only

    def register(self, model: Any, *, tags: Mapping[str, Any]) -> str:
        """The job registered the version already: only add the loop's tags."""
        from raypipe.tracking.store import retrying

        def tag(key: str, value: Any) -> None:
            retrying(
                lambda: self.registry.client.set_model_version_tag(
                    self.model_name, model, key, str(value)
                )
            )

        for key, value in tags.items():
            tag(key, value)
        return str(model)

    def score(self, model: Any, table: pa.Table) -> np.ndarray:
        from raypipe.tracking.models import load_model
        from raypipe.training.preprocess import predict_table

        loaded = load_model(f"models:/{self.model_name}/{model}", tracking_uri=self.tracking_uri)
        return predict_table(loaded, table)

    def _latest(self) -> str | None:
        from raypipe.tracking.store import retrying

        try:
            versions = retrying(
                lambda: self.registry.client.search_model_versions(f"name='{self.model_name}'")
            )
        except Exception:
            return None
        return max((str(v.version) for v in versions), key=int, default=None)

    def _submit(self, overrides: list[str]) -> None:
        executable = shutil.which("raypipe")
        if executable is None:
            raise SpecError(["`raypipe` is not on PATH; `--submit` runs `raypipe submit`"])
        command = [executable, "submit", str(self.spec)]
        command += [f"--address={self.address}"] if self.address else []
        command += [f"--data-dir={self.data_dir}"] if self.data_dir else []
        for override in overrides:
            command += ["--set", override]
        if subprocess.run(command, check=False).returncode != 0:
            raise StageError(f"the retraining job `{self.spec}` failed on the cluster")


def register(app: typer.Typer) -> None:
    """Add ``raypipe watch`` to ``app``."""

    @app.command()
    def watch(
        spec: Annotated[Path, typer.Argument(help="Job spec with `lifecycle.watch`.")],
        once: Annotated[
            bool, typer.Option("--once", help="Process the new periods once and exit.")
        ] = False,
        interval: Annotated[
            float, typer.Option("--interval", help="Seconds between looks for new periods.")
        ] = 300.0,
        submit: Annotated[
            bool, typer.Option("--submit", help="Retrain as a Ray job on `watch.address`.")
        ] = False,
        data_dir: SpecDataDirOption = None,
        tracking_uri: TrackingUriOption = None,
    ) -> None:
        """Evaluate drift, performance, freshness and schedule triggers on each new period and
        retrain (with a cool-down), challenge and request promotion under the policy."""
        from raypipe.tracking.approvals import resolve_identity
        from raypipe.tracking.continual import WatchLoop
        from raypipe.tracking.lifecycle import Lifecycle
        from raypipe.tracking.policy import load_policy
        from raypipe.tracking.store import resolve_tracking_uri

        policy = load_policy(spec)
        if policy.watch is None:
            raise SpecError(
                ["`lifecycle.watch` is not set"],
                source=str(spec),
                hint="add `watch: {periods: FOLDER, retrain_set: [...]}` under `lifecycle:`",
            )
        folder = policy.watch.periods
        if "://" not in folder and not os.path.isabs(folder):
            folder = str(spec.parent / folder)
        from raypipe.spec import load_job

        data_dir = data_dir or load_job(spec).data_dir  # checks the job before any watching
        uri = resolve_tracking_uri(tracking_uri, data_dir)
        retrainer = JobRetrainer(
            spec,
            policy.model,
            overrides=policy.watch.retrain_set,
            data_dir=data_dir,
            tracking_uri=uri,
            address=policy.watch.address,
            submit=submit,
        )
        # The loop's state is a small local JSON file (under a local data dir, else here).
        local = data_dir if "://" not in data_dir else ".raypipe-watch"
        state = Path(local) / "lifecycle" / policy.model / "watch.json"
        loop = WatchLoop(
            Lifecycle(retrainer.registry, policy),
            retrainer,
            state_path=str(state),
            who=resolve_identity(policy.identity),
            label=policy.watch.label,
            id_columns=policy.watch.id_columns,
        )
        while True:
            periods = list_periods(folder)
            for period in periods:
                loop.periods.setdefault(period.name, period)
            if loop.champion is None and periods and not loop.state.processed:
                raise SpecError(
                    [f"`{policy.model}` has no production version to watch"],
                    hint=f"promote one first: `raypipe models promote {policy.model} VERSION`",
                )
            for period in periods:
                if period.name in loop.state.processed:
                    continue
                retrainer.period = period.name
                outcome = loop.step(period)
                fired = ", ".join(f.trigger for f in outcome.firings) or "none"
                typer.echo(
                    f"{period.name}: champion {outcome.champion}, triggers: {fired}"
                    + (f", retrained -> {outcome.challenger}" if outcome.retrained else "")
                    + (" (cooling down)" if outcome.cooling_down else "")
                    + (f"; {outcome.transition.describe()}" if outcome.transition else "")
                    + (
                        f"; challenger refused: {'; '.join(outcome.challenge.reasons)}"
                        if outcome.challenge and not outcome.challenge.passed
                        else ""
                    )
                )
            if once:
                return
            time.sleep(interval)
