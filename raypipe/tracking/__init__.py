"""Tracking: MLflow runs, the governed registry, the audit log and checksummed model loading.

MLflow is imported lazily inside functions, so importing this package is cheap. The driver is the
only MLflow writer. Load models with :func:`raypipe.tracking.models.load_model`.
"""

from __future__ import annotations

from raypipe.tracking.audit import AuditEntry, AuditLog, ConcurrentChangeError
from raypipe.tracking.models import LoadedModel, load_model, load_model_blob
from raypipe.tracking.registry import CHALLENGER, CHAMPION, GateDecision, Registry, bless
from raypipe.tracking.store import audit_path, default_tracking_uri, resolve_tracking_uri

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "AuditEntry",
    "AuditLog",
    "ConcurrentChangeError",
    "GateDecision",
    "LoadedModel",
    "Registry",
    "audit_path",
    "bless",
    "default_tracking_uri",
    "load_model",
    "load_model_blob",
    "resolve_tracking_uri",
]
