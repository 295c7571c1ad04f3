"""The dependency rules of ARCHITECTURE.md, read off the source: who may import whom, and no import cycle.

``api_schemas`` imports nothing else of ours; ``audits`` imports ``api_schemas``, ``errors`` and itself;
``retrieval`` and ``tools`` may import ``audits``; ``store`` is imported by the service and the workers and
imports neither; ``service`` never imports ``workers``, ``audits`` (except the torch-free prompt and model-text
modules it counts tokens with, and ``estimate``, the plan's cost), ``retrieval`` or ``tools``; ``workers`` never
import ``service``. Lazy imports inside functions count too: they are dependencies all the same. ``pages`` (the
report page and the UI views) imports only ``api_schemas`` and itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

from cases import ROOT

PACKAGE = ROOT / "faithaudit"
TOKEN_COUNTING = tuple(
    f"faithaudit.audits.{m}"
    for m in (
        "prompt",
        "model.adapter",
        "model.chat",
        "model.registry",
        "answers",
        "source_limits",
        "placebos",
        "estimate",
        "mechanism.budget",  # the mechanism method's checks at submit (torch-free)
        "mechanism.architectures",
    )
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, module_level_only: bool) -> set[str]:
    """Our modules imported by ``path`` (``from a.b import c`` counts as a.b, and a.b.c when that is a module).
    ``if TYPE_CHECKING:`` blocks are skipped: they never run."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("faithaudit"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("faithaudit"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}"))
        for child in ast.iter_child_nodes(node):
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if top and nested and module_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            visit(child, top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, True)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def violations(importer_prefix: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, path in all_modules().items():
        if name == importer_prefix or name.startswith(importer_prefix + "."):
            for dep in imports(path, module_level_only=False):
                if dep.startswith(forbidden) and not dep.startswith(allowed):
                    out.append(f"{name} imports {dep}")
    return sorted(out)


def test_api_schemas_import_nothing_else_of_ours():
    assert violations("faithaudit.api_schemas", ("faithaudit.",), allowed=("faithaudit.api_schemas",)) == []


def test_audits_import_only_schemas_errors_and_themselves():
    allowed = ("faithaudit.api_schemas", "faithaudit.errors", "faithaudit.audits")
    assert violations("faithaudit.audits", ("faithaudit.",), allowed=allowed) == []


def test_pages_render_schemas_only():
    """The report page and the UI views read ``api_schemas`` data: the CLI, the API and a saved report share them."""
    allowed = ("faithaudit.api_schemas", "faithaudit.pages")
    assert violations("faithaudit.pages", ("faithaudit.",), allowed=allowed) == []


def test_importers_and_exporters_are_pure_parsing():
    """The API imports the importers: they read JSON into requests and may use only schemas and errors."""
    allowed = ("faithaudit.api_schemas", "faithaudit.errors", "faithaudit.importers")
    assert violations("faithaudit.importers", ("faithaudit.",), allowed=allowed) == []
    allowed = ("faithaudit.api_schemas", "faithaudit.errors", "faithaudit.pages", "faithaudit.exporters")
    assert violations("faithaudit.exporters", ("faithaudit.",), allowed=allowed) == []


def test_store_service_and_workers_keep_their_direction():
    assert violations("faithaudit.store", ("faithaudit.service", "faithaudit.workers", "faithaudit.audits")) == []
    assert violations("faithaudit.workers", ("faithaudit.service",)) == []
    service_forbidden = ("faithaudit.workers", "faithaudit.audits", "faithaudit.retrieval", "faithaudit.tools")
    assert violations("faithaudit.service", service_forbidden, allowed=TOKEN_COUNTING) == []


def test_no_import_cycle_at_module_level():
    modules = all_modules()
    graph = {m: {d for d in imports(p, module_level_only=True) if d in modules and d != m} for m, p in modules.items()}
    # a package's own __init__ importing its submodules is the registration pattern, not a cycle
    for m in graph:
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                walk(dep, stack + [dep])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])
    assert cycles == []


def test_the_rules_see_real_imports():
    """The checks above are not vacuous: the CLI, which may import anything, is seen importing the service and
    the audits, lazily, and the plan's registry is seen importing its stages."""
    cli = violations("faithaudit.cli", ("faithaudit.service", "faithaudit.audits"))
    assert any("faithaudit.service" in v for v in cli) and any("faithaudit.audits" in v for v in cli)
    assert "faithaudit.audits.stages" in imports(PACKAGE / "audits" / "plan.py", module_level_only=False)
    assert "faithaudit.audits.stages" not in imports(PACKAGE / "audits" / "plan.py", module_level_only=True)


def test_no_function_in_audits_is_longer_than_60_lines():
    long = []
    for path in (PACKAGE / "audits").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []
