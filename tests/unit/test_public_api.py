"""Each package's ``__all__`` is its public surface, and each module's names what it defines.

As httpx's ``tests/test_exported_members.py`` does for its package: a name without a leading
underscore is public, so it is either exported or renamed, and ``__all__`` lists nothing that is
not there. Packages re-export (their ``__init__`` defines nothing itself); modules export what they
define, never what they import.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import typing
from types import ModuleType

import pytest

import raypipe

MODULE_NAMES = [
    "raypipe",
    *sorted(info.name for info in pkgutil.walk_packages(raypipe.__path__, "raypipe.")),
]
PACKAGE_NAMES = [
    name for name in MODULE_NAMES if hasattr(importlib.import_module(name), "__path__")
]

#: Dunder names that are part of the public surface (as httpx's test allows `__version__`).
PUBLIC_DUNDERS = {"__version__"}

#: Modules whose public functions or classes are not in ``__all__`` (or whose ``__all__`` lists an
#: import), found when this test was written. Each is strict: fixing one makes its case fail
#: until it is removed from this table.
KNOWN_MISMATCHES: dict[str, str] = {
    "raypipe.cli.data": "commands `check`, `group` not exported nor private",
    "raypipe.cli.features": "commands `check`, `discover`, `group`, `suggest`",
    "raypipe.cli.submit": "commands `list_`, `logs`, `stop`, `submit`",
    "raypipe.cli.main": "`plan`, `render_error`, `validate`, `version`",
    "raypipe.cli.models": "`group`, `list_models`, `promote`, `rollback`, `show_model`",
    "raypipe.cli.monitor": "`drift`, `group`, `report`",
    "raypipe.engine.submission": "`format_summaries`, `read_requirements`",
    "raypipe.features.pit": "`tables_without_data`",
    "raypipe.federated.clients": "`binary_scores`, `roc_auc`",
    "raypipe.federated.models": "`client_order`",
    "raypipe.federated.simulation": "`evaluate_central`, `failed_reply`, `summarize_clients`",
    "raypipe.federated.stage": "`DPOptions`, `PartitionOptions`, `SecAggOptions`",
    "raypipe.federated.strategies.xgb_bagging": "`__all__` re-exports `boost_locally`",
    "raypipe.tracking.store": "`artifact_root`",
    "raypipe.training.experiment": "`holdout_metrics`",
    "raypipe.training.stage": "`bayes_auc`, `report_html`, `training_spec`",
}


def _is_typing_helper(value: object) -> bool:
    return isinstance(value, (typing.TypeVar, typing.ParamSpec)) or value is typing.TYPE_CHECKING


def _defined_at_top_level(module: ModuleType) -> dict[str, str]:
    """Names the module's source binds at its top level -> ``"def"``, ``"class"`` or ``"value"``."""
    defined: dict[str, str] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defined[node.name] = "def"
        elif isinstance(node, ast.ClassDef):
            defined[node.name] = "class"
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defined.setdefault(name.id, "value")
    return defined


def _module_cases() -> list[object]:
    cases: list[object] = []
    for name in MODULE_NAMES:
        if name in PACKAGE_NAMES:
            continue
        reason = KNOWN_MISMATCHES.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        cases.append(pytest.param(name, marks=marks, id=name))
    return cases


@pytest.mark.parametrize("name", PACKAGE_NAMES)
def test_a_package_exports_exactly_its_public_names(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        attribute
        for attribute, value in vars(package).items()
        if (not attribute.startswith("_") or attribute in PUBLIC_DUNDERS)
        and not inspect.ismodule(value)
        and not _is_typing_helper(value)
        and attribute != "annotations"  # `from __future__ import annotations`
    }
    exported = getattr(package, "__all__", [])
    assert len(exported) == len(set(exported)), f"`{name}.__all__` lists a name twice"
    assert set(exported) == public


@pytest.mark.parametrize("name", _module_cases())
def test_a_module_exports_what_it_defines(name: str) -> None:
    module = importlib.import_module(name)
    defined = _defined_at_top_level(module)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"`{name}` has no `__all__`"
    assert len(exported) == len(set(exported)), f"`{name}.__all__` lists a name twice"
    assert sorted(set(exported) - set(defined)) == [], "exported but not defined here"
    public_code = {
        attribute
        for attribute, kind in defined.items()
        if kind in ("def", "class") and not attribute.startswith("_")
    }
    assert sorted(public_code - set(exported)) == [], "public but not exported"


def test_the_known_mismatches_name_existing_modules() -> None:
    assert set(KNOWN_MISMATCHES) <= set(MODULE_NAMES)
