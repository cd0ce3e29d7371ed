"""A variant's model, swappable in place while requests are scored.

:class:`ModelSlot` holds one variant's loaded model and the registry version it came from. A
request takes ``slot.current`` once and scores with it to the end, and :meth:`ModelSlot.refresh`
replaces ``current`` with one assignment after the new model is fully loaded, so a promotion
never fails a request and never mixes two models in one batch. Scoring goes through the batch
:class:`~raypipe.inference.Predictor` (its feature selection and the training preprocessing), so
an online score equals the batch score of the same features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from raypipe.inference.model import ModelBlob, read_model
from raypipe.inference.predictor import Predictor
from raypipe.serving.requests import rows_to_matrix, rows_to_table

__all__ = ["LoadedModel", "ModelSlot", "alias_resolver", "registry_loader", "score_rows"]

logger = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


@dataclass(frozen=True)
class LoadedModel:
    """A ready predictor and the version it was loaded as (registry version or content hash)."""

    predictor: Predictor
    version: str
    uri: str

    @cached_property
    def content(self) -> str:
        """The model's bytes and encoding: variants whose models have equal content (an A/A
        test, both arms of a promotion on one version) are scored in one model call."""
        blob = self.predictor.model
        encoding = json.dumps(blob.preprocess, sort_keys=True, default=str)
        return f"{blob.version}:{hashlib.sha256(encoding.encode()).hexdigest()[:16]}"


def score_rows(predictor: Predictor, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Scores of ``rows`` (dicts of columns), through the batch predictor's preprocessing.

    Without a preprocessing state (all features numeric, used as they are) the matrix comes
    straight from the rows; it holds the values the batch path's table would.
    """
    if not predictor.model.preprocess:
        return predictor.predict(rows_to_matrix(rows, predictor.feature_names_))
    table = rows_to_table(rows, predictor.feature_names_, predictor.categorical_)
    return predictor.predict(predictor.feature_matrix(table))


#: ``loader(uri) -> (blob, version)``; ``resolver(uri) -> version`` or ``None`` (never moves).
Loader = Callable[[str], tuple[ModelBlob, str]]
Resolver = Callable[[str], "str | None"]


def registry_loader(tracking_uri: str | None) -> Loader:
    """Load ``uri`` with its checksum verified; registry models report their registry version."""

    def load(uri: str) -> tuple[ModelBlob, str]:
        if uri.startswith("models:/"):
            from raypipe.tracking.models import load_model

            loaded = load_model(uri, tracking_uri=tracking_uri)
            blob = ModelBlob.from_bytes(
                bytes(loaded.data), format=loaded.format, uri=uri, preprocess=loaded.preprocess
            )
            return blob, str(loaded.version)
        blob = read_model(uri)
        return blob, blob.version

    return load


def alias_resolver(tracking_uri: str | None) -> Resolver:
    """The version a ``models:/name@alias`` URI points to now (one registry query)."""

    def resolve(uri: str) -> str | None:
        match = _ALIAS_URI.match(uri)
        if match is None:
            return None
        from raypipe.tracking.store import get_client, resolve_tracking_uri

        client = get_client(resolve_tracking_uri(tracking_uri))
        return str(client.get_model_version_by_alias(match["name"], match["alias"]).version)

    return resolve


class ModelSlot:
    """One variant's current model; :meth:`refresh` swaps in a newer one atomically.

    Parameters
    ----------
    uri
        The variant's model URI.
    loader, resolver
        How to load the model and how to ask which version the URI names now.
    nthread
        XGBoost threads per prediction (one: a replica owns one CPU by default).
    """

    def __init__(self, uri: str, loader: Loader, resolver: Resolver, *, nthread: int = 1) -> None:
        self.uri = uri
        self._loader = loader
        self._resolver = resolver
        self._nthread = nthread
        self.swaps = 0
        self.current = self._load()

    def _load(self) -> LoadedModel:
        blob, version = self._loader(self.uri)
        return LoadedModel(Predictor(blob, nthread=self._nthread), version, self.uri)

    def refresh(self) -> bool:
        """Load the model again if the URI now names another version; True when swapped."""
        wanted = self._resolver(self.uri)
        if wanted is None or wanted == self.current.version:
            return False
        loaded = self._load()
        if loaded.version == self.current.version:
            return False
        previous, self.current = self.current.version, loaded
        self.swaps += 1
        logger.info("model `%s` swapped: version %s -> %s", self.uri, previous, loaded.version)
        return True
