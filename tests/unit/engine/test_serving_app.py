"""The Serve application of a service, as built (no Ray started)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from ray import serve

from raypipe.engine.serving import build_app, build_deployment
from raypipe.serving.spec import ServiceSpec


def _deployment(**kwargs: Any) -> serve.Deployment:
    spec = ServiceSpec("fraud", {"champion": "models:/fraud@champion"}, data_dir="/tmp", **kwargs)
    return build_deployment(spec)


def test_the_app_is_a_serve_application() -> None:
    spec = ServiceSpec("fraud", {"champion": "models:/fraud@champion"}, data_dir="/tmp")
    assert isinstance(build_app(spec), serve.Application)


def test_no_serve_access_log_beside_the_request_log() -> None:
    assert _deployment().logging_config["enable_access_log"] is False


def test_autoscaling_bounds_or_a_fixed_count() -> None:
    fixed = _deployment(min_replicas=2, max_replicas=2)
    assert fixed.num_replicas == 2
    scaled = _deployment(min_replicas=1, max_replicas=3, target_ongoing_requests=8.0)
    # Ray 2.60's Deployment has no public autoscaling accessor (`num_replicas` reads 1 here).
    config = scaled._deployment_config.autoscaling_config
    assert config is not None
    assert (config.min_replicas, config.max_replicas, config.target_ongoing_requests) == (1, 3, 8.0)


def test_haproxy_only_on_a_ray_started_here() -> None:
    from raypipe.engine.serving import THROUGHPUT_ENV, serve_environment

    spec = ServiceSpec("fraud", {"champion": "models:/fraud@champion"}, data_dir="/tmp")
    local = serve_environment(spec, local=True)
    assert local["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    # Joining a cluster: the flags travel, this machine's HAProxy files and launcher do not.
    assert serve_environment(spec, local=False) == THROUGHPUT_ENV
    plain = ServiceSpec("fraud", {"champion": "m"}, data_dir="/tmp", throughput_optimized=False)
    assert serve_environment(plain, local=True) == {}


def test_a_local_serving_runtime_hands_the_environment_to_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from raypipe.engine.runtime import WORKER_ENV
    from raypipe.engine.serving import THROUGHPUT_ENV, serving_runtime

    monkeypatch.setattr(os, "environ", dict(os.environ))  # this test's changes end with it
    joined = serving_runtime(_spec(), "ray://head:10001")  # not started: nothing connects
    assert joined.options.address == "ray://head:10001"
    assert joined.options.worker_env == {**WORKER_ENV, **THROUGHPUT_ENV}
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ  # a cluster keeps its own settings
    local = serving_runtime(_spec())
    assert local.options.address is None
    env = {k: v for k, v in local.options.worker_env.items() if k not in WORKER_ENV}
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and THROUGHPUT_ENV.items() <= env.items()
    # Serve's controller and proxy are Ray's processes, not workers: they inherit this one's.
    assert {name: os.environ[name] for name in env} == env


def _spec() -> ServiceSpec:
    return ServiceSpec("fraud", {"champion": "models:/fraud@champion"}, data_dir="/tmp")
