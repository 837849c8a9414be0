"""The layout's rules (docs/architecture.md), read from the code's own imports.

Every import counts, also one inside a function: a function-local import
hides an arrow from a reader, not from this test.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Adapters and their frameworks: pipeline/ is a library and never reaches them.
ADAPTER_MODULES = ("worker", "celery", "kombu", "billiard", "fastapi", "starlette", "uvicorn", "click")


def _unit(module: str) -> str | None:
    """The room a module lives in: a package of pipeline/ or worker/ (a top-level module is its own room)."""
    parts = module.split(".")
    if parts[0] not in ("pipeline", "worker") or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module in ("pipeline", "worker"):
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(top: str) -> list[Path]:
    return sorted((ROOT / top).rglob("*.py"))


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _sources("pipeline") + _sources("worker"):
        me = _unit(_module_name(path))
        if me is None:
            continue
        for name in _imports(path):
            other = _unit(name)
            if other and other != me:
                graph[me].add(other)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle between rooms, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circles_between_packages():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


@pytest.mark.parametrize("path", _sources("pipeline"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pipeline_never_imports_an_adapter(path: Path):
    reached = {name for name in _imports(path) if name.split(".")[0] in ADAPTER_MODULES}
    assert not reached, f"{path.relative_to(ROOT)} imports {sorted(reached)}"


def test_core_is_the_floor():
    """pipeline/core (settings, errors, types, logging) imports nothing else of the project."""
    for path in _sources("pipeline/core"):
        above = {n for n in _imports(path) if n.startswith(("pipeline.", "worker")) and not n.startswith("pipeline.core")}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
