"""pytest turns raypipe's own warnings into errors (``filterwarnings`` in pyproject.toml)."""

from __future__ import annotations

import types

import pytest


def _module(name: str, source: str) -> types.ModuleType:
    """A module named ``name``: warnings are attributed by the caller frame's ``__name__``."""
    module = types.ModuleType(name)
    exec(source, module.__dict__)
    return module


WARN = "import warnings\ndef warn():\n    warnings.warn('careful', UserWarning)\n"


def test_a_warning_raised_in_raypipe_fails_the_test() -> None:
    with pytest.raises(UserWarning, match="careful"):
        _module("raypipe.some_module", WARN).warn()


def test_a_library_deprecation_at_a_raypipe_call_site_fails_the_test() -> None:
    library = _module(
        "some_library",
        "import warnings\ndef old():\n"
        "    warnings.warn('old is deprecated', DeprecationWarning, stacklevel=2)\n",
    )
    caller = _module("raypipe.caller", "def call(fn):\n    fn()\n")
    with pytest.raises(DeprecationWarning, match="old is deprecated"):
        caller.call(library.old)


def test_packages_that_only_share_the_prefix_only_warn() -> None:
    with pytest.warns(UserWarning, match="careful"):
        _module("raypipe_plugin.module", WARN).warn()
