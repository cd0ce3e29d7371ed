"""The KubeRay manifests in cluster/kuberay/ against KubeRay's v1 CRD fields (no cluster needed).

``kuberay_v1_schema.json`` is KubeRay v1.7.0's CRD schema pruned by ``make_kuberay_schema.py``:
unknown keys are errors, types and enums are checked. On top: ``rayStartParams`` must be flags
of this Ray's ``ray start``, ``rayVersion`` this Ray, and a RayJob's entrypoint a valid
``raypipe run`` command line.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.scripts.scripts import start as ray_start_command

KUBERAY = Path(__file__).resolve().parents[3] / "cluster" / "kuberay"
SCHEMAS = json.loads(Path(__file__).with_name("kuberay_v1_schema.json").read_text())
MANIFESTS = {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}
RAY_START_FLAGS = {opt for param in ray_start_command.params for opt in param.opts}
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((KUBERAY / name).read_text())  # type: ignore[no-any-return]


def validate_spec(kind: str, spec: dict[str, Any]) -> None:
    schema = {**SCHEMAS[kind], "definitions": SCHEMAS["definitions"]}
    jsonschema.Draft7Validator(schema).validate(spec)


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    return spec["rayClusterSpec"] if manifest["kind"] == "RayJob" else spec  # type: ignore[no-any-return]


@pytest.mark.parametrize(("name", "kind"), MANIFESTS.items())
def test_manifest_fits_the_kuberay_v1_crd(name: str, kind: str) -> None:
    manifest = load(name)
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
    assert DNS_1123.fullmatch(manifest["metadata"]["name"])
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    validate_spec(kind, manifest["spec"])


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "complaint"),
    [
        (
            "RayCluster",
            "raycluster.yaml",
            lambda s: s["workerGroupSpecs"][0].update(maxReplica=3),
            "maxReplica",
        ),
        (
            "RayCluster",
            "raycluster.yaml",
            lambda s: s["authOptions"].update(mode="tokens"),
            "tokens",
        ),
        (
            "RayCluster",
            "raycluster.yaml",
            lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePull="x"),
            "imagePull",
        ),
        (
            "RayJob",
            "rayjob.yaml",
            lambda s: s.update(shutdownAfterJobFinish=True),
            "shutdownAfterJobFinish",
        ),
        (
            "RayJob",
            "rayjob.yaml",
            lambda s: s["rayClusterSpec"]["autoscalerOptions"].update(upscalingMode="Fast"),
            "Fast",
        ),
        ("RayJob", "rayjob.yaml", lambda s: s.update(backoffLimit="2"), "'2'"),
    ],
)
def test_the_crd_check_rejects_unknown_keys_bad_enums_and_types(
    kind: str, name: str, mutate: Any, complaint: str
) -> None:
    spec = copy.deepcopy(load(name)["spec"])
    mutate(spec)
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        validate_spec(kind, spec)


@pytest.mark.parametrize("name", MANIFESTS)
def test_ray_start_params_are_flags_of_this_ray(name: str) -> None:
    spec = cluster_spec(load(name))
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for key, value in group["rayStartParams"].items():
            assert f"--{key}" in RAY_START_FLAGS, f"`ray start` has no --{key}"
            assert isinstance(value, str), f"rayStartParams.{key} must be a string"
    assert spec["rayVersion"] == ray.__version__
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["authOptions"] == {"mode": "token"}


@pytest.mark.parametrize("name", MANIFESTS)
def test_workers_autoscale_to_100_nodes_of_16_cpus(name: str) -> None:
    spec = cluster_spec(load(name))
    assert spec["enableInTreeAutoscaling"] is True
    (workers,) = spec["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (0, 100)
    (container,) = workers["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["resources"]["requests"]["cpu"] == "16"


def test_rayjob_entrypoint_is_a_valid_raypipe_run_command() -> None:
    import typer

    from raypipe.cli import run as run_command

    app = typer.Typer()
    run_command.register(app)
    command = typer.main.get_command(app)
    spec = load("rayjob.yaml")["spec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["raypipe", "run"]
    # Parses with the real `raypipe run` options (no run happens).
    run = command.commands["run"]  # type: ignore[attr-defined]
    context = run.make_context("run", words[2:])
    assert context.params["address"] == "auto"
    assert context.params["spec"] == Path("/app/jobs/churn.yaml")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert set(runtime_env) <= {"env_vars", "pip", "working_dir", "py_modules", "excludes"}
    assert runtime_env["env_vars"]["RAYPIPE_DATA_DIR"].startswith("s3://")
