"""The cluster-launcher YAMLs in cluster/ against Ray's own config schema and ``ray start``'s flags.

What ``ray up`` checks before it calls any cloud: the file against Ray's
``ray/autoscaler/ray-schema.json`` and, after Ray fills in the provider's defaults
(``prepare_config``), ``validate_config``. No cloud call is made: the AWS/GCP bootstrap steps that
talk to the cloud are not run.
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
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start_command

CLUSTER = Path(__file__).resolve().parents[3] / "cluster"
LAUNCHER_CONFIGS = ["local.yaml", "aws.yaml", "gcp.yaml"]
CLOUD_CONFIGS = ["aws.yaml", "gcp.yaml"]
RAY_START_FLAGS = {opt for param in ray_start_command.params for opt in param.opts}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def ray_schema() -> dict[str, Any]:
    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def start_commands(config: dict[str, Any]) -> list[str]:
    return [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]


def ray_start_flags(command: str) -> list[str]:
    """The ``--flag`` names a shell command passes to ``ray start``."""
    words = shlex.split(command.replace(";", " ; "))
    if "start" not in words:
        return []
    after = words[words.index("start") + 1 :]
    return [word.split("=", 1)[0] for word in after if word.startswith("--")]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_config_passes_rays_schema_as_written_and_as_ray_up_prepares_it(
    name: str, ray_schema: dict[str, Any]
) -> None:
    config = load(name)
    jsonschema.validate(config, ray_schema)
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize(
    ("path", "bad_key"),
    [((), "max_worker"), (("provider",), "security_group"), (("auth",), "ssh_usr")],
)
def test_the_schema_check_rejects_a_misspelt_key(
    path: tuple[str, ...], bad_key: str, ray_schema: dict[str, Any]
) -> None:
    config = load("aws.yaml")
    target = config
    for key in path:
        target = target[key]
    target[bad_key] = {"GroupName": 1} if bad_key == "security_group" else 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, ray_schema)


def test_a_node_type_with_an_unknown_field_is_rejected(ray_schema: dict[str, Any]) -> None:
    config = load("gcp.yaml")
    config["available_node_types"]["ray_cpu_worker"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        jsonschema.validate(config, ray_schema)


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_every_ray_start_flag_exists_in_this_ray(name: str) -> None:
    flags = [flag for command in start_commands(load(name)) for flag in ray_start_flags(command)]
    assert "--head" in flags and "--address" in flags
    unknown = sorted(set(flags) - RAY_START_FLAGS)
    assert not unknown, f"`ray start` has no {unknown}"


def test_flag_check_would_catch_a_typo() -> None:
    assert ray_start_flags("ulimit -n 1; ray start --head --object-spilling-dir=/x") == [
        "--head",
        "--object-spilling-dir",
    ]
    assert "--object-spilling-dir" not in RAY_START_FLAGS


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_token_auth_is_on_and_the_dashboard_stays_private(name: str) -> None:
    config = load(name)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for command in start_commands(config):
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token ray start" in command
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--num-cpus=0" in head
    assert "--object-spilling-directory=" in " ".join(start_commands(config))


@pytest.mark.parametrize("name", CLOUD_CONFIGS)
def test_cloud_configs_scale_cpu_workers_to_100_nodes_with_a_taskless_head(name: str) -> None:
    config = load(name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert workers and all(t["resources"]["CPU"] == 16 for t in workers.values())
    assert all(t["min_workers"] == 0 and t["max_workers"] == 100 for t in workers.values())
    assert config["max_workers"] == 100
    # Ray in the image must be the Ray the clients and the tests use.
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-cpu"


def test_on_prem_worker_count_matches_its_machines() -> None:
    config = load("local.yaml")
    prepared = prepare_config(copy.deepcopy(config))
    node_type = prepared["available_node_types"][prepared["head_node_type"]]
    assert node_type["max_workers"] == len(config["provider"]["worker_ips"])
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip) for ip in config["provider"]["worker_ips"])
