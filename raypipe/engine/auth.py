"""Ray token authentication, the same for ``run --address``, ``submit`` and ``jobs``.

One function, :func:`auth_token_for`, finds the token (Ray's own loader and precedence:
``RAY_AUTH_TOKEN``, then the file at ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``) and
refuses to send it where it would travel in clear text to another machine: over ``http://`` or
plain gRPC (no ``RAY_USE_TLS=1``) it goes only to this machine (loopback or one of its own
interface addresses, where a local node listens) or through a tunnel (``ray dashboard``,
``kubectl port-forward``, ``ssh -L``), unless the user opts in with ``--allow-insecure-token``.

Ray itself sends the token to the GCS only when ``RAY_AUTH_MODE=token`` is set, and for an
explicit address it never turns that on by itself; :func:`enable_token_mode` does, when a token
was found and the user did not choose a mode.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from urllib.parse import urlsplit

from raypipe.errors import RuntimeUnavailableError

__all__ = [
    "auth_token_for",
    "check_token_transport",
    "enable_token_mode",
    "is_loopback",
    "is_this_machine",
    "read_auth_token",
]

logger = logging.getLogger(__name__)

TOKEN_SOURCES_HINT = (
    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the head "
    "node prints the cluster's token)"
)


def read_auth_token() -> str | None:
    """The Ray auth token this machine would use, or ``None`` when there is none.

    Uses Ray's own loader, so the precedence is Ray's: ``RAY_AUTH_TOKEN``, then the file at
    ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``.
    """
    # ray/_raylet.pyi lists only part of the compiled module; the loader is there at run time.
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]
    from ray.exceptions import AuthenticationError

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # the environment may have changed since the last call
    try:
        if not loader.has_token(ignore_auth_mode=True):
            return None
        token = loader.get_raw_token(ignore_auth_mode=True)
    except AuthenticationError as exc:
        raise RuntimeUnavailableError(
            f"Could not read the Ray auth token: {exc}",
            hint="set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a readable file, or copy the "
            "cluster's token (`ray get-auth-token` on the head node) to ~/.ray/auth_token",
        ) from exc
    finally:
        # The loader is process-wide: leave no token cached from this call's environment, or a
        # later local `ray.init` in this process would present it to its own cluster.
        loader.reset_cache()
    return str(token).strip() or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (no name lookup).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("10.0.0.1")
    (True, True, False)
    """
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_this_machine(host: str) -> bool:
    """Whether ``host`` is loopback or an address of one of this machine's own interfaces.

    Packets to a machine's own address never leave it (the kernel delivers them locally), and
    a local Ray node listens on the machine's address, not on 127.0.0.1.
    """
    if is_loopback(host):
        return True
    import psutil  # a dependency of Ray

    host = host.strip("[]").lower()
    return any(
        address.address.split("%")[0].lower() == host
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
    )


def _scheme_and_host(address: str) -> tuple[str, str]:
    if "://" not in address:  # a GCS address, host:port
        address = f"gcs://{address}"
    parts = urlsplit(address)
    return parts.scheme.lower(), parts.hostname or ""


def check_token_transport(address: str, *, allow_insecure: bool = False) -> None:
    """Refuse to send a token in clear text from this machine to another one.

    Raises
    ------
    RuntimeUnavailableError
        When ``address`` is ``http://`` (or plain gRPC without ``RAY_USE_TLS=1``) on a host
        that is not loopback, and ``allow_insecure`` is false.
    """
    scheme, host = _scheme_and_host(address)
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    encrypted = scheme == "https" or (scheme != "http" and tls)
    if encrypted or is_this_machine(host) or allow_insecure:
        return
    raise RuntimeUnavailableError(
        f"Refusing to send the Ray auth token in clear text to `{address}`: it is not "
        f"encrypted ({scheme}) and `{host}` is not this machine",
        hint="reach the cluster through a tunnel to 127.0.0.1 (`ray dashboard CLUSTER.yaml`, "
        "`kubectl port-forward`, `ssh -L`), use https:// (or RAY_USE_TLS=1 for ray://), or pass "
        "--allow-insecure-token on a network you trust",
    )


def auth_token_for(address: str, *, allow_insecure: bool = False) -> str | None:
    """The token to present to the cluster at ``address``, or ``None`` when there is none.

    The one way ``run --address``, ``submit`` and ``jobs`` find the token; see the module.
    """
    token = read_auth_token()
    if token is not None:
        check_token_transport(address, allow_insecure=allow_insecure)
    return token


def enable_token_mode() -> None:
    """Make this process present its token to the GCS (``RAY_AUTH_MODE=token``).

    Ray turns token mode on by itself only for a new local cluster or ``address="auto"``; a
    mode the user set (``RAY_AUTH_MODE=disabled``) is left alone.
    """
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()
    logger.debug("RAY_AUTH_MODE=token: the auth token is sent to the cluster")
