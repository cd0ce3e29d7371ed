"""The CLI drops Ray's per-start token-auth notice (nothing to act on), and only that line."""

from __future__ import annotations

import logging

from raypipe.cli.main import _configure_logging


def test_rays_token_auth_enabled_notice_is_dropped_other_ray_warnings_kept() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    seen: list[str] = []
    capture = logging.Handler()
    capture.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(capture)
    try:
        _configure_logging(False)
        _configure_logging(False)  # configured twice (tests, nested calls): one filter
        logger.warning(
            "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled "
            "to opt out."
        )
        logger.warning("Token authentication is disabled for this Ray cluster.")
    finally:
        logger.removeHandler(capture)
        root.handlers[:], root.level = handlers, level
    assert seen == ["Token authentication is disabled for this Ray cluster."]
    assert len(logger.filters) == 1
