"""The feature store: a registry of served views, online stores, materialization, freshness."""

from __future__ import annotations
