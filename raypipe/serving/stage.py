"""Stage kind ``serve.deploy``: deploy what a job trained as an online service on the job's Ray.

.. code-block:: yaml

    deploy:
      uses: serve.deploy
      inputs: {model: train.model, sample: features.training_set}
      with: {name: fraud, alias: champion, views: [fraud_purchase], port: 8071}

The model is ``with.model`` (a URI) or the registered model of the ``model`` input (a
``train.search`` artifact) at ``alias``; the service follows that alias, so a later promotion
reloads it in place. With a ``sample`` input the stage scores its first ``smoke_rows`` rows
through the running service and against the batch :class:`~raypipe.inference.Predictor`, and
fails unless every score is equal. The output ``deployment`` records the service (name, URL,
version, smoke result); the service runs as long as the job's Ray does (a cluster job: until
``raypipe serve stop``). ``views`` are read from the online store ``online`` names, spelled as in
``features.materialize`` (``{kind: sqlite, path: ...}`` by default under the data dir, or
``{kind: redis, url: ...}``).
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from raypipe.errors import ModelError, SpecError
from raypipe.features.store.stage import OnlineOptions, default_store
from raypipe.io.dataset import read_dataset, write_dataset
from raypipe.serving.backend import ServingBackend
from raypipe.serving.record import ServiceRecord
from raypipe.serving.scorer import registry_loader
from raypipe.serving.spec import DEFAULT_BATCH_WAIT_MS, DEFAULT_PORT, ServiceSpec
from raypipe.stages.backend import require
from raypipe.stages.base import DatasetInput, Stage, StageContext, StageOptions, StageResult

__all__ = ["DeployOptions", "DeployStage"]


class DeployOptions(StageOptions):
    """Options of ``serve.deploy`` (see the module docstring)."""

    name: str
    model: str | None = None
    alias: str = "champion"
    entity: str = "player_id"
    views: list[str] = Field(default_factory=list)
    full_feature_names: bool = False
    online: OnlineOptions = Field(default_factory=OnlineOptions)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_batch_size: int = Field(32, ge=1)
    batch_wait_ms: float = Field(DEFAULT_BATCH_WAIT_MS, ge=0)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    replica_cpus: float = Field(1.0, gt=0)
    reload_interval_s: float = Field(5.0, gt=0)
    smoke_rows: int = Field(200, ge=1)


class DeployStage(Stage[DeployOptions]):
    """Deploy the job's model on Ray Serve and check it scores like batch."""

    kind = "serve.deploy"
    options = DeployOptions
    optional_inputs: ClassVar[tuple[str, ...]] = ("model", "sample")
    outputs: ClassVar[tuple[str, ...]] = ("deployment",)

    def run(
        self, context: StageContext, inputs: Mapping[str, DatasetInput], options: DeployOptions
    ) -> StageResult:
        spec = ServiceSpec(
            name=options.name,
            variants={"champion": _model_uri(inputs, options, context.stage_name)},
            entity=options.entity,
            views=tuple(options.views),
            full_feature_names=options.full_feature_names,
            store=default_store(context.data_dir, options.online) if options.views else None,
            data_dir=context.data_dir,
            host=options.host,
            port=options.port,
            max_batch_size=options.max_batch_size,
            batch_wait_s=options.batch_wait_ms / 1000,
            max_ongoing_requests=max(128, options.max_batch_size),
            min_replicas=options.min_replicas,
            max_replicas=options.max_replicas,
            replica_cpus=options.replica_cpus,
            reload_interval_s=options.reload_interval_s,
        )
        # Checked before any time is counted: an `--inline` run has nothing to host replicas.
        serving = require(context.backend, ServingBackend, stage=context.stage_name)
        started = time.perf_counter()
        serving.deploy_service(spec)
        ServiceRecord(spec.name, spec.url, 0, None, dict(spec.variants)).write(spec.data_dir)
        metrics: dict[str, Any] = {
            "url": spec.url,
            "deploy_s": round(time.perf_counter() - started, 2),
        }
        if "sample" in inputs:
            metrics.update(_smoke(spec, inputs["sample"], options.smoke_rows))
        record = pa.table(
            {k: [str(v)] for k, v in {"name": spec.name, **spec.variants, **metrics}.items()}
        )
        manifest = write_dataset(context.output_url("deployment"), record)
        return StageResult(outputs={"deployment": manifest}, metrics=metrics)


def _model_uri(inputs: Mapping[str, DatasetInput], options: Any, stage: str) -> str:
    if options.model:
        return str(options.model)
    if "model" not in inputs:
        raise SpecError(
            [f"stage `{stage}` needs `with.model` (a model URI) or input `model`"],
            hint="e.g. `inputs: {model: train.model}`",
        )
    name = (inputs["model"].manifest.metadata or {}).get("model_name")
    if not name:
        raise ModelError(
            f"model artifact `{inputs['model'].url}` does not say its registered `model_name`",
            hint="pass `with.model: models:/NAME@ALIAS` instead",
        )
    return f"models:/{name}@{options.alias}"


def _smoke(spec: ServiceSpec, sample: DatasetInput, rows: int) -> dict[str, Any]:
    """Score ``rows`` sample rows through the service and in batch; fail unless all are equal."""
    from raypipe.inference.predictor import Predictor
    from raypipe.tracking.store import resolve_tracking_uri

    table = read_dataset(sample.url).slice(0, rows)
    tracking_uri = resolve_tracking_uri(spec.tracking_uri, spec.data_dir)
    blob, version = registry_loader(tracking_uri)(spec.variants["champion"])
    predictor = Predictor(blob)
    columns = [spec.entity, *[c for c in predictor.feature_names_ if c in table.column_names]]
    instances = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in table.select(columns).to_pylist()
    ]
    body = json.dumps({"instances": instances}, default=str).encode()
    request = urllib.request.Request(f"{spec.url}/predict", body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    online = np.array([p["score"] for p in answer["predictions"]], np.float32)
    batch = predictor(table)["score"].to_numpy()
    differ = int(np.sum(online != batch))
    if differ:
        raise ModelError(
            f"service `{spec.name}` scored {differ} of {len(batch)} sample rows differently "
            "from batch scoring",
            hint="the online store's values differ from the sample's; serve without `views` "
            "or materialize the sample's features",
        )
    return {"smoke_rows": len(batch), "smoke_equal": True, "version": version}
