"""No import cycles in bearerd, between modules or between its packages — counting every import,
including those inside functions and under ``TYPE_CHECKING``: a cycle is a design knot either way."""

from __future__ import annotations

import ast
from pathlib import Path

import bearerd

ROOT = Path(bearerd.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # bearerd.proxy, bearerd.tokens, …, or a top-level module


def test_no_module_import_cycle() -> None:
    graph = imports()
    assert len(graph) > 40
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_package_import_cycle() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in imports().items():
        if module == "bearerd":
            continue
        here = package_of(module)
        packages.setdefault(here, set()).update(package_of(t) for t in targets if package_of(t) != here)
    for targets in packages.values():
        targets.discard("bearerd")
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages) or [])
