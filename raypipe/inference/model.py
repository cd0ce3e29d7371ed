"""Where a model comes from: a URI resolved to bytes, a format and a version.

Three kinds of ``MODEL`` are accepted:

- an XGBoost model file (``.json`` or ``.ubj``) at any fsspec URL or local path;
- ``models:/name@alias`` or ``models:/name/version``, resolved by ``raypipe.tracking``;
- a scikit-learn model saved with skops (``.skops``), through ``raypipe.tracking``, which loads it
  with a type allow-list; a pickle file is refused whatever checksum comes with it (legacy pickles
  load only from the registry, and only when explicitly allowed).

The model travels to workers as a :class:`ModelBlob` (bytes plus format), never as a live object,
so every worker builds its own booster once, from bytes that were read and hashed once.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raypipe.errors import ModelError

__all__ = ["XGBOOST_FORMATS", "ModelBlob", "read_model"]

logger = logging.getLogger(__name__)

#: File suffix -> XGBoost serialisation format.
XGBOOST_FORMATS: dict[str, str] = {".json": "xgboost-json", ".ubj": "xgboost-ubj"}

#: The seam to the tracking package: ``load_model_blob(uri)`` returns an object with ``format``,
#: ``data`` and ``preprocess``, checksum verified. Looked up lazily: inference works without it.
TRACKING_LOADER = "raypipe.tracking.models:load_model_blob"


@dataclass(frozen=True)
class ModelBlob:
    """A model as bytes: what workers receive and load once.

    Attributes
    ----------
    format
        ``xgboost-json``, ``xgboost-ubj``, ``sklearn-skops`` or ``sklearn`` (a legacy pickle from
        the registry, let through only by an explicit opt-in).
    data
        The serialised model.
    uri
        Where it was read from (for messages and lineage).
    preprocess
        The training encoding (``TablePreprocessor.to_dict``) of models trained by raypipe, whose
        input columns are raw (categoricals as strings); ``None`` for plain feature matrices.
    version
        First 16 hex digits of the SHA-256 of ``data``: output file names and resume keys use it,
        so a new model never reuses another model's committed units.
    """

    format: str
    data: bytes
    uri: str
    version: str
    preprocess: Mapping[str, Any] | None = None

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        format: str,
        uri: str,
        preprocess: Mapping[str, Any] | None = None,
    ) -> ModelBlob:
        return cls(
            format=format,
            data=data,
            uri=uri,
            version=hashlib.sha256(data).hexdigest()[:16],
            preprocess=preprocess,
        )


def read_model(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    tracking_uri: str | None = None,
    allow_pickle: bool | None = None,
) -> ModelBlob:
    """Read the model at ``uri`` once, on the driver, with its checksum verified.

    ``tracking_uri`` is the registry of ``models:/`` URIs (default: the tracking package's).
    ``allow_pickle`` opts in to a legacy pickle version of the registry (never a loose file);
    ``None`` leaves the choice to ``RAYPIPE_ALLOW_PICKLE``.
    ``raypipe.tracking.models.load_model`` does the reading when it is installed (registry URIs,
    committed artifacts and sidecar ``.sha256`` files verified, ``.skops`` files checked against
    the type allow-list, pickle files refused); without it, XGBoost ``.json``/``.ubj`` files are
    read directly.

    Raises
    ------
    ModelError
        The file is missing, corrupt, of an unknown format, or fails its checksum.
    """
    loader = _tracking_loader()
    if loader is not None and not storage_options:
        if tracking_uri is None and allow_pickle is None:
            loaded = loader(uri)
        else:
            loaded = _load_with_store(uri, tracking_uri, allow_pickle)
        blob = ModelBlob.from_bytes(
            bytes(loaded.data),
            format=str(loaded.format),
            uri=uri,
            preprocess=getattr(loaded, "preprocess", None),
        )
    elif uri.startswith("models:/"):
        raise ModelError(
            f"Model `{uri}` needs the model registry (`{TRACKING_LOADER}`), which is not available",
            hint="score an XGBoost `.json`/`.ubj` file directly",
        )
    else:
        blob = _read_xgboost_file(uri, storage_options)
    logger.info(
        "model `%s` read: %s, %d bytes, version %s", uri, blob.format, len(blob.data), blob.version
    )
    return blob


def _read_xgboost_file(uri: str, storage_options: dict[str, Any] | None) -> ModelBlob:
    name = uri.rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in XGBOOST_FORMATS:
        raise ModelError(
            f"Model `{uri}` has an unknown format: expected a `.json` or `.ubj` XGBoost file or a "
            f"`models:/name@alias` URI, received suffix `{suffix or '(none)'}`",
            hint="save XGBoost models with `booster.save_model('model.ubj')`",
        )
    import fsspec

    try:
        with fsspec.open(uri, "rb", **(storage_options or {})) as handle:
            data = handle.read()
    except (FileNotFoundError, OSError) as exc:
        raise ModelError(
            f"Model file `{uri}` could not be read: {exc}",
            hint="check the path or URL and its credentials",
        ) from exc
    return ModelBlob.from_bytes(data, format=XGBOOST_FORMATS[suffix], uri=uri)


def _tracking_loader() -> Callable[[str], Any] | None:
    module_name, _, attr = TRACKING_LOADER.partition(":")
    try:
        loader: Callable[[str], Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    return loader


def _load_with_store(uri: str, tracking_uri: str | None, allow_pickle: bool | None) -> Any:
    from raypipe.tracking.models import load_model

    return load_model(uri, tracking_uri=tracking_uri, allow_pickle=allow_pickle)
