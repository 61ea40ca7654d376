"""The layers' seams (STYLE.md, "Seams between layers"): the domain imports
no other package of this repository, so an adapter or the API never rides
into the workflow sandbox with it; workflows import only the domain.

Every import counts, at the top of a module or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# This repository's own top-level packages and modules.
LOCAL = {
    path.name if path.is_dir() else path.stem
    for path in ROOT.iterdir()
    if (path.is_dir() and (path / "__init__.py").exists())
    or (path.suffix == ".py" and path.is_file())
}


def local_imports(package: str) -> dict[str, set[str]]:
    """module path -> the local top-level packages it imports."""
    found: dict[str, set[str]] = {}
    for module in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(module.relative_to(ROOT))] = names & LOCAL
    return found


def test_the_repository_packages_are_known() -> None:
    assert {"payments", "workflows", "activities", "gateway", "api", "archive"} <= LOCAL


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("payments", {"payments"}),
        ("workflows", {"workflows", "payments"}),
    ],
)
def test_imports_point_inwards(package: str, allowed: set[str]) -> None:
    crossing = {
        module: sorted(names - allowed)
        for module, names in local_imports(package).items()
        if names - allowed
    }
    assert crossing == {}


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# The workflow's own tests drive it through the service layer, never the API.
WORKFLOW_TESTS = [
    "tests/support.py",
    "tests/integration/test_payment_saga.py",
    "tests/integration/test_payment_windows.py",
    "tests/integration/test_state_model.py",
    "tests/integration/test_archive.py",
    "tests/histories/record.py",
]


@pytest.mark.parametrize("path", WORKFLOW_TESTS)
def test_the_workflow_s_tests_need_no_api(path: str) -> None:
    imported = _imported_modules(ROOT / path)
    assert sorted(name for name in imported if name.split(".")[0] == "api") == []


ROUTERS = ["api.routes", "api.streaming", "api.demo", "api.reconciliation", "api.webhooks"]


@pytest.mark.parametrize("router", ROUTERS)
def test_routers_do_not_import_each_other(router: str) -> None:
    path = ROOT / (router.replace(".", "/") + ".py")
    others = set(ROUTERS) - {router}
    imported = _imported_modules(path)
    assert sorted(imported & others) == []


@pytest.mark.parametrize("router", ROUTERS)
def test_routers_reach_temporal_only_through_the_services(router: str) -> None:
    # The use cases own every workflow start, update, signal and read
    # (payments/service.py, payments/reconciliation_service.py).
    imported = _imported_modules(ROOT / (router.replace(".", "/") + ".py"))
    assert sorted(name for name in imported if name.split(".")[0] == "temporalio") == []
