"""The seams, checked: which package may import which (docs/architecture.md draws them).

- a capability (``functions/<capability>/``) imports ``shared`` and itself, never another
  capability; only ``openapi`` — the document of every route — reads every router;
- ``shared`` imports no capability;
- the logic (services, repositories, models, everything but routes and handlers) never
  imports the HTTP layer (``shared.api``, Powertools' event handler);
- the worker image imports its own capability (``workers``) and ``shared`` only;
- an ``infra`` construct imports the runtime modules of the capability it deploys (for its
  environment contract and routes) and no other; ``infra.settings`` only the jobs runner's
  catalogue (settings own their defaults and checks);
- Powertools' route table (a private attribute) is read in one adapter, ``shared.api.routes_of``
  (``tests/unit/test_api_basics.py`` fails if Powertools changes it);
- nothing in ``functions/`` is kept only for the benchmarks or the tests: every top-level
  function and class there is used by code that ships;
- no import circles, anywhere in shipped code or the benchmarks.
"""

from __future__ import annotations

import ast
import re
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


DEPLOYS = {  # infra module -> the capabilities whose runtime modules it may import
    "sessions": {"sessions"},
    "session_storage": {"sessions"},
    "jobs": {"jobs", "berth_jobs"},
    "instances": {"instances"},
    "workers": {"workers", "berth_worker"},
    "usage": {"usage"},
    "live": {"live"},
    "api": {"health", "openapi"},
    "stack": {"openapi"},  # the document's deployment names
    "settings": {"berth_jobs"},  # the default catalogue: the jobs the runner image implements
}
RUNTIME = {*CAPABILITIES, "berth_jobs", "berth_worker"} - {"shared"}


def test_an_infra_module_imports_only_the_capability_it_deploys() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "infra").glob("*.py")
        for module in imports_of(path)
        if top(module) in RUNTIME - DEPLOYS.get(path.stem, set())
    }
    assert offenders == set()


def test_powertools_route_table_is_read_in_one_adapter() -> None:
    readers = {
        str(path.relative_to(ROOT))
        for folder in ("functions", "infra", "client", "containers")
        for path in (ROOT / folder).rglob("*.py")
        if "._routes" in path.read_text()
    }
    assert readers == {"functions/shared/api.py"}


def _shipped_sources() -> dict[Path, str]:
    folders = ("functions", "containers", "infra", "client/berth_client")
    paths = [p for folder in folders for p in (ROOT / folder).rglob("*.py")] + [ROOT / "app.py"]
    return {path: path.read_text() for path in paths}


def _is_route(node: ast.FunctionDef | ast.ClassDef) -> bool:
    """``@router.get(...)``/``@app.post(...)``: reached through the resolver, not by name."""
    for decorator in node.decorator_list:
        called = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (
            isinstance(called, ast.Attribute)
            and isinstance(called.value, ast.Name)
            and called.value.id in {"router", "app"}
        ):
            return True
    return False


def test_nothing_in_functions_is_kept_only_for_bench_or_tests() -> None:
    shipped = _shipped_sources()
    unused = set()
    for path in FUNCTIONS.rglob("*.py"):
        for node in ast.parse(shipped[path]).body:
            if not isinstance(node, ast.FunctionDef | ast.ClassDef) or _is_route(node):
                continue
            if node.name.startswith("_"):
                continue
            name = re.compile(rf"\b{re.escape(node.name)}\b")
            if sum(len(name.findall(text)) for text in shipped.values()) <= 1:  # its own def
                unused.add(f"{path.relative_to(ROOT)}: {node.name}")
    assert unused == set()


SOURCES = (  # (where a module's import name starts, the folder of its files)
    ("functions", "functions"),
    ("", "infra"),
    ("", "bench"),
    ("client", "client/berth_client"),
    ("containers/worker", "containers/worker/berth_worker"),
    ("containers/jobs", "containers/jobs/berth_jobs"),
)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base, folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports_between(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the first-party modules it imports (``from a import b``: ``a.b`` if a module)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        targets.add(f"{node.module}.{alias.name}")
                    elif node.module in modules:
                        targets.add(node.module)
        graph[name] = targets - {name}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    """No import circles anywhere in shipped code or the benchmarks (type-only imports
    count: a circle of types is a circle of knowledge)."""
    graph = _imports_between(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert circles == []
