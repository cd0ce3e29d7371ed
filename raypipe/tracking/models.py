"""Load a trained model, with its checksum verified: the API scorers and services use.

``load_model(uri)`` accepts

- ``models:/name@alias`` or ``models:/name/version``: the registered version's model file is
  downloaded and its SHA-256 compared with the ``raypipe.sha256`` tag written at registration;
- a model file path or fsspec URL (``.ubj``/``.json`` XGBoost, ``.skops`` scikit-learn): inside a
  committed raypipe artifact the manifest's checksum is verified; otherwise a sidecar
  ``<file>.sha256`` or ``expected_sha256`` is used when there is one.

Nothing handed over runs code. scikit-learn models are saved with skops and loaded with
:data:`SKLEARN_TRUSTED_TYPES` only (the types raypipe's candidates are made of): a ``.skops``
file holding any other type is refused before anything is built. A pickle (``.pkl``, the legacy
format) is refused by default; with ``allow_pickle=True`` (or ``RAYPIPE_ALLOW_PICKLE=1``) it is
loaded only from the registry, whose checksum raypipe itself recorded, never from a loose file,
whatever checksum (``.sha256``, ``_manifest.json``) came with it.

A mismatch raises :class:`~raypipe.errors.ModelError`. The tracking store of ``models:/`` URIs is
``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///$RAYPIPE_DATA_DIR/mlflow.db``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raypipe.errors import ModelError
from raypipe.redaction import redact_text, redact_url

__all__ = [
    "ALLOW_PICKLE_ENV",
    "MODEL_FILES",
    "SKLEARN_TRUSTED_TYPES",
    "LoadedModel",
    "check_skops_types",
    "load_model",
    "load_model_blob",
    "load_sklearn_model",
    "model_file_name",
]

logger = logging.getLogger(__name__)

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
#: Model format -> the file name raypipe stores it under.
MODEL_FILES = {
    "xgboost-ubj": "model.ubj",
    "xgboost-json": "model.json",
    "sklearn-skops": "model.skops",
    "sklearn": "model.pkl",  # legacy pickle: refused unless allowed, and only from the registry
}
_FORMATS = {Path(name).suffix: format for format, name in MODEL_FILES.items()}

#: Set to ``1`` to let :func:`load_model` unpickle legacy registry versions.
ALLOW_PICKLE_ENV = "RAYPIPE_ALLOW_PICKLE"

#: Types a skops model file may hold beyond skops' own safe defaults (scikit-learn estimators,
#: numpy arrays): exactly what raypipe's candidates (``training/estimators.py``) and federated
#: export are built from. ``functools.partial`` is loaded by skops only around a trusted function.
SKLEARN_TRUSTED_TYPES: tuple[str, ...] = (
    "functools.partial",
    "numpy.dtype",
    "raypipe.federated.export.FederatedModel",
    "raypipe.federated.models.LocalTrainSpec",
    "raypipe.training.estimators.NamedModel",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
)


def model_file_name(model_format: str) -> str:
    """``model.ubj``, ``model.skops``...: the file a model of ``model_format`` is stored in."""
    try:
        return MODEL_FILES[model_format]
    except KeyError:
        raise ModelError(
            f"unknown model format `{model_format}`; expected one of: {', '.join(MODEL_FILES)}"
        ) from None


@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready to score.

    Attributes
    ----------
    format
        ``xgboost-ubj``, ``xgboost-json``, ``sklearn-skops`` or (legacy, allowed) ``sklearn``.
    data
        The model file's bytes (what was hashed).
    sha256
        Their SHA-256.
    uri
        What was asked for; ``name``/``version`` are set for registry URIs.
    preprocess
        The training encoding (``TablePreprocessor.to_dict``) when known, else ``None``.
    """

    format: str
    data: bytes
    sha256: str
    uri: str
    name: str | None = None
    version: str | None = None
    preprocess: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> Any:
        """The live model: an ``xgboost.Booster`` or a raypipe ``NamedModel``."""
        if self.format.startswith("xgboost"):
            import xgboost as xgb

            try:
                return xgb.Booster(model_file=bytearray(self.data))
            except xgb.core.XGBoostError as exc:
                raise ModelError(f"`{self.uri}` is not a valid XGBoost model") from exc
        return load_sklearn_model(self.data, self.format, allow_pickle=True)  # gated on load

    @property
    def feature_names(self) -> list[str]:
        if self.preprocess:
            return [*self.preprocess["numeric"], *self.preprocess["categories"]]
        model = self.model
        names = getattr(model, "feature_names", None) or list(
            getattr(model, "feature_names_in_", [])
        )
        return [str(n) for n in names]


def load_sklearn_model(
    data: bytes, format: str = "sklearn-skops", *, allow_pickle: bool = False
) -> Any:
    """Build a scikit-learn model from ``data``: skops with the allow-list, or a vetted pickle.

    ``allow_pickle`` is for bytes whose checksum came from raypipe's registry (see
    :func:`load_model`, which decides that); without it a pickle is refused.

    Raises
    ------
    ModelError
        An untrusted type inside a skops file, a refused pickle, or bytes that do not load.
    """
    if format == "sklearn-skops":
        import skops.io

        check_skops_types(data, "the scikit-learn model")
        try:
            return skops.io.loads(data, trusted=list(SKLEARN_TRUSTED_TYPES))
        except Exception as exc:
            raise ModelError(f"scikit-learn model could not be loaded: {exc}") from exc
    if format != "sklearn" or not allow_pickle:
        raise ModelError(
            f"refusing to unpickle a model of format `{format}`",
            hint="save scikit-learn models with skops (`.skops`)",
        )
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise ModelError(f"scikit-learn model could not be loaded: {exc}") from exc


def check_skops_types(data: bytes, what: str) -> None:
    """Refuse a skops file holding a type outside :data:`SKLEARN_TRUSTED_TYPES` (nothing runs)."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # not a zip, no schema: not a skops file
        raise ModelError(f"{what} is not a valid skops file: {exc}") from exc
    refused = sorted(set(untrusted) - set(SKLEARN_TRUSTED_TYPES))
    if refused:
        raise ModelError(
            f"{what} holds types raypipe does not trust: {', '.join(f'`{t}`' for t in refused)}",
            hint="raypipe loads only the scikit-learn, numpy and raypipe types its own "
            "candidates use; retrain the model with raypipe",
        )


def load_model_blob(uri: str) -> LoadedModel:
    """The seam :mod:`raypipe.inference.model` calls: ``format``/``data`` of a verified model."""
    return load_model(uri)


def load_model(
    uri: str,
    *,
    tracking_uri: str | None = None,
    expected_sha256: str | None = None,
    allow_pickle: bool | None = None,
) -> LoadedModel:
    """Load the model at ``uri`` and verify its checksum (see the module docstring).

    Parameters
    ----------
    allow_pickle
        Load a legacy pickle from the registry (never from a file). Default: whether
        ``RAYPIPE_ALLOW_PICKLE`` is ``1``.

    Raises
    ------
    ModelError
        Unknown URI, missing model or alias, checksum mismatch, a refused pickle, or a skops file
        with an untrusted type.
    """
    if allow_pickle is None:
        allow_pickle = os.environ.get(ALLOW_PICKLE_ENV) == "1"
    match = _MODELS_URI.match(uri)
    if match:
        loaded = _load_registered(uri, match, tracking_uri)
        if loaded.format == "sklearn" and not allow_pickle:
            raise ModelError(
                f"`{uri}` (version {loaded.version}) is a legacy pickle; raypipe does not unpickle "
                "by default",
                hint=f"retrain to register a skops version, or set `{ALLOW_PICKLE_ENV}=1` "
                "(`raypipe infer --allow-pickle`) to load this version (its checksum is the "
                "registry's own record)",
            )
    elif uri.startswith("models:/"):
        raise ModelError(
            f"`{uri}` is not a registry URI raypipe understands",
            hint="use `models:/NAME@ALIAS` or `models:/NAME/VERSION`",
        )
    else:
        loaded = _load_file(uri, expected_sha256)
    if loaded.format == "sklearn-skops":
        check_skops_types(loaded.data, f"`{uri}`")
    return loaded


def _verify(data: bytes, expected: str | None, uri: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if expected is not None and digest != expected:
        raise ModelError(
            f"checksum mismatch for `{uri}`: expected sha256 `{expected[:16]}…`, "
            f"received `{digest[:16]}…`",
            hint="the model file was changed or corrupted after it was saved; retrain or "
            "restore it",
        )
    return digest


def _load_registered(uri: str, match: re.Match[str], tracking_uri: str | None) -> LoadedModel:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from raypipe.tracking.store import get_client, resolve_tracking_uri

    store = resolve_tracking_uri(tracking_uri, create=False)
    # Reading a model must not leave an empty store behind where there was none.
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///") :]).exists():
        raise ModelError(
            f"`{uri}` needs a model registry, and there is none at `{store}`",
            hint="pass `--tracking-uri` with the registry the model was trained into (e.g. "
            "`sqlite:////path/to/raypipe-data/mlflow.db`), or run from the folder that holds "
            "`raypipe-data`",
        )
    client = get_client(store)
    name = match["name"]
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"])
        else:
            version = client.get_model_version(name, match["version"])
    except MlflowException as exc:
        raise ModelError(
            f"`{uri}` is not in the registry at `{redact_url(store)}`: "
            f"{redact_text(str(exc).splitlines()[0])}",
            hint="see what exists with `raypipe models list`, or pass `--tracking-uri`",
        ) from exc
    tags = dict(version.tags)
    model_file = tags.get("raypipe.model_file")
    expected = tags.get("raypipe.sha256")
    if not model_file or not expected:
        raise ModelError(
            f"`{uri}` (version {version.version}) has no `raypipe.sha256` checksum tag",
            hint="register models through raypipe's training stage",
        )
    from raypipe.tracking.runs import global_tracking_uri

    with tempfile.TemporaryDirectory() as tmp, global_tracking_uri(store):
        try:
            root = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version.version}",
                tracking_uri=store,
                dst_path=tmp,
            )
        except MlflowException as exc:
            raise ModelError(f"model files of `{uri}` could not be read: {exc}") from exc
        path = Path(root) / model_file
        if not path.exists():
            raise ModelError(f"`{uri}` has no file `{model_file}` in `{version.source}`")
        data = path.read_bytes()
        # MLflow keeps extra files in a sub-folder (``extra_files/``) whose name varies by flavor.
        found = sorted(Path(root).rglob("preprocess.json"))
        preprocess_bytes = found[0].read_bytes() if found else b""
        if "raypipe.preprocess_sha256" in tags:
            _verify(preprocess_bytes, tags["raypipe.preprocess_sha256"], f"{uri} (preprocess.json)")
        preprocess = json.loads(preprocess_bytes) if found else None
    digest = _verify(data, expected, uri)
    return LoadedModel(
        format=tags.get("raypipe.format", _FORMATS[Path(model_file).suffix]),
        data=data,
        sha256=digest,
        uri=uri,
        name=name,
        version=str(version.version),
        preprocess=preprocess,
        tags={k: v for k, v in tags.items() if k.startswith("raypipe.")},
    )


def _artifact_root(uri: str) -> str | None:
    """The committed raypipe artifact ``uri`` lies in (logical or staged path), if any."""
    from raypipe.errors import RaypipeError
    from raypipe.io.manifest import read_manifest

    parent = uri.rstrip("/").rpartition("/")[0]
    for root in (parent, parent.rpartition("/")[0]):
        if not root:
            continue
        try:
            read_manifest(root)
        except (RaypipeError, OSError, ValueError):
            continue
        return root
    return None


def _load_file(uri: str, expected: str | None) -> LoadedModel:
    import fsspec

    from raypipe.errors import RaypipeError

    suffix = Path(uri).suffix.lower()
    if suffix == ".pkl":
        # Whatever checksum came with a handed-over file came from whoever handed it over.
        raise ModelError(
            f"`{uri}` is a pickle; raypipe never unpickles a model file handed to it, whatever "
            "checksum (`.sha256`, `_manifest.json`) comes with it, because unpickling runs code",
            hint="score a registered version (`models:/NAME@ALIAS`), or a scikit-learn model saved "
            "with skops (`skops.io.dump(model, 'model.skops')`, loaded with raypipe's type "
            "allow-list)",
        )
    if suffix not in _FORMATS:
        raise ModelError(
            f"`{uri}` has an unknown model format `{suffix or '(none)'}`",
            hint="expected `.ubj`/`.json` (XGBoost), `.skops` (scikit-learn) or "
            "`models:/NAME@ALIAS`",
        )
    name = uri.rstrip("/").rpartition("/")[2]
    root = _artifact_root(uri)
    preprocess = None
    if root is not None:
        from raypipe.io.artifacts import read_artifact_file

        try:
            data = read_artifact_file(root, name)
        except RaypipeError as exc:
            raise ModelError(f"model `{uri}` failed verification: {exc.message}") from exc
        try:
            preprocess = json.loads(read_artifact_file(root, "preprocess.json"))
        except RaypipeError:
            preprocess = None
        digest = _verify(data, expected, uri)
    else:
        try:
            with fsspec.open(uri, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, OSError) as exc:
            raise ModelError(f"model file `{uri}` could not be read: {exc}") from exc
        if expected is None:
            try:
                with fsspec.open(uri + ".sha256", "rt") as handle:
                    expected = handle.read().split()[0]
            except (FileNotFoundError, OSError, IndexError):
                expected = None
        digest = _verify(data, expected, uri)
    return LoadedModel(
        format=_FORMATS[suffix], data=data, sha256=digest, uri=uri, preprocess=preprocess
    )
