"""The seams, checked: which package may import which (docs/architecture.md draws them).

- a capability (``functions/<capability>/``) imports ``shared`` and itself, never another
  capability; only ``openapi`` — the document of every route — reads every router;
- ``shared`` imports no capability;
- the logic (services, repositories, models, everything but routes and handlers) never
  imports the HTTP layer (``shared.api``, Powertools' event handler);
- the worker image imports its own capability (``workers``) and ``shared`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra.settings import ROOT

FUNCTIONS = ROOT / "functions"
CAPABILITIES = sorted(
    p.name for p in FUNCTIONS.iterdir() if p.is_dir() and (p / "__init__.py").exists()
)
HTTP_LAYER = ("shared.api", "aws_lambda_powertools.event_handler")
HTTP_MODULES = ("routes.py", "handler.py")
"""A module whose name ends so (``routes.py``, ``credential_routes.py``) is the HTTP layer."""


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("capability", [c for c in CAPABILITIES if c not in {"shared", "openapi"}])
def test_a_capability_imports_no_other_capability(capability: str) -> None:
    others = set(CAPABILITIES) - {capability, "shared"}
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (FUNCTIONS / capability).rglob("*.py")
        for module in imports_of(path)
        if top(module) in others
    }
    assert offenders == set()


def test_shared_imports_no_capability() -> None:
    capabilities = set(CAPABILITIES) - {"shared"}
    offenders = {
        f"{path.name} imports {module}"
        for path in (FUNCTIONS / "shared").rglob("*.py")
        for module in imports_of(path)
        if top(module) in capabilities
    }
    assert offenders == set()


def test_logic_never_imports_the_http_layer() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in FUNCTIONS.rglob("*.py")
        if not path.name.endswith(HTTP_MODULES)
        and path.parent.name != "openapi"
        and path.name != "api.py"
        for module in imports_of(path)
        if module.startswith(HTTP_LAYER)
    }
    assert offenders == set()


def test_the_worker_image_imports_only_its_capability_and_shared() -> None:
    capabilities = set(CAPABILITIES) - {"workers", "shared"}
    offenders = {
        f"{path.name} imports {module}"
        for path in (ROOT / "containers" / "worker").rglob("*.py")
        for module in imports_of(path)
        if top(module) in capabilities
    }
    assert offenders == set()
