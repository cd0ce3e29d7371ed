"""Token auth the same for run --address, submit and jobs; never in clear text to another host.

``ray.init`` is replaced by a recorder: these tests check what the runtime would hand Ray (the
auth mode in the environment at that moment), without starting Ray.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raypipe.engine import auth
from raypipe.engine.runtime import RayRuntime, RuntimeOptions
from raypipe.errors import RuntimeUnavailableError


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A token in ~/.ray/auth_token of a fresh HOME, and no auth variables set."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_USE_TLS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("tok-from-home\n")
    return "tok-from-home"


@pytest.fixture
def ray_init(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record ``ray.init`` calls (with RAY_AUTH_MODE at call time) instead of starting Ray."""
    import ray
    from ray._raylet import Config  # type: ignore[attr-defined]

    calls: list[dict[str, Any]] = []
    original_mode = os.environ.get("RAY_AUTH_MODE")

    def fake_init(**kwargs: Any) -> None:
        calls.append({**kwargs, "auth_mode": os.environ.get("RAY_AUTH_MODE")})

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(RayRuntime, "cpus", property(lambda self: 1))
    monkeypatch.setattr(RayRuntime, "node_ids", staticmethod(lambda: ["n"]))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    yield calls
    # enable_token_mode set the variable and reloaded Ray's config: undo both for later tests.
    if original_mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = original_mode
    Config.initialize("")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("http://127.0.0.1:8265", True),
        ("http://localhost:8265", True),
        ("http://[::1]:8265", True),
        ("127.0.0.1:6379", True),
        ("ray://127.0.0.1:10001", True),
        ("https://ray.example.com", True),
        ("http://10.0.0.7:8265", False),
        ("http://head.example.com:8265", False),
        ("10.0.0.7:6379", False),
        ("ray://10.0.0.7:10001", False),
    ],
)
def test_a_token_goes_in_clear_text_only_to_loopback(address: str, allowed: bool) -> None:
    if allowed:
        auth.check_token_transport(address)
    else:
        with pytest.raises(RuntimeUnavailableError, match="clear text"):
            auth.check_token_transport(address)
        auth.check_token_transport(address, allow_insecure=True)


def test_tls_makes_grpc_addresses_safe_but_not_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USE_TLS", "1")
    auth.check_token_transport("ray://10.0.0.7:10001")
    auth.check_token_transport("10.0.0.7:6379")
    with pytest.raises(RuntimeUnavailableError):
        auth.check_token_transport("http://10.0.0.7:8265")


def test_run_address_finds_the_token_like_submit_and_turns_token_mode_on(
    token: str, ray_init: list[dict[str, Any]]
) -> None:
    assert auth.auth_token_for("http://127.0.0.1:8265") == token  # what submit and jobs send
    RayRuntime(RuntimeOptions(address="127.0.0.1:6379")).start()
    assert ray_init[-1]["address"] == "127.0.0.1:6379"
    assert ray_init[-1]["auth_mode"] == "token", "no RAY_AUTH_MODE needed from the user"


def test_run_address_respects_an_explicit_auth_mode(
    token: str, ray_init: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    RayRuntime(RuntimeOptions(address="127.0.0.1:6379")).start()
    assert ray_init[-1]["auth_mode"] == "disabled"


def test_run_address_refuses_a_clear_text_token_before_connecting(
    token: str, ray_init: list[dict[str, Any]]
) -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"10\.0\.0\.7") as info:
        RayRuntime(RuntimeOptions(address="10.0.0.7:6379")).start()
    assert ray_init == [] and "--allow-insecure-token" in (info.value.hint or "")
    RayRuntime(RuntimeOptions(address="10.0.0.7:6379", allow_insecure_token=True)).start()
    assert ray_init[-1]["auth_mode"] == "token"


def test_a_local_ray_and_auto_leave_the_token_to_ray(
    token: str, ray_init: list[dict[str, Any]]
) -> None:
    RayRuntime(RuntimeOptions(num_cpus=1)).start()
    RayRuntime(RuntimeOptions(address="auto")).start()
    assert [call["auth_mode"] for call in ray_init] == [None, None]


def test_an_address_of_this_machines_own_interface_is_this_machine() -> None:
    """A local Ray node listens on the machine's address (e.g. 192.0.2.2), not on 127.0.0.1."""
    import psutil

    own = [
        a.address
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family.name == "AF_INET" and not a.address.startswith("127.")
    ]
    if not own:
        pytest.skip("this machine has no non-loopback IPv4 address")
    auth.check_token_transport(f"{own[0]}:6379")
    auth.check_token_transport(f"http://{own[0]}:8265")
    assert not auth.is_this_machine("203.0.113.9")  # TEST-NET-3: never an interface here
