from __future__ import annotations

from tests.support.plugin_package import plugin_package  # noqa: F401 - fixture
