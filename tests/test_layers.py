"""The house: imports run downward only, read from the source itself (lazy imports inside functions too).

simgan (the CLI and benchmarks)
service (HTTP)
jobs (RQ glue)             only jobs/train.py reaches trainer/
trainer (torch)
models (registry, cards, ONNX sessions)   simulators (numpy)
core (the ground floor: settings, layout, files, errors, images, archives, datasets)
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"core": 0, "models": 1, "simulators": 1, "trainer": 2, "jobs": 3, "service": 4, "simgan": 5}
"""A package may import only packages on a lower floor (and itself)."""
FORBIDDEN = {
    "core": {"torch", "fastapi", "starlette", "onnxruntime", "rq", "redis"},
    "models": {"torch", "fastapi", "starlette"},
    "simulators": {"torch", "fastapi", "starlette"},
    "trainer": {"fastapi", "starlette"},
    "jobs": {"fastapi", "starlette"},
    "service": {"torch"},
}
"""Third-party packages each floor must never import: the ground floor runs anywhere, the service
without torch."""
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports, anywhere in the file (absolute names; relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level or None]
                node_module = ".".join([*base, node.module] if node.module else base)
            else:
                node_module = node.module or ""
            names.add(node_module)
            names.update(f"{node_module}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()
IMPORTS = {module: _imports(path, module) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_import_runs_downward(module: str) -> None:
    package = module.split(".")[0]
    upward = sorted(
        name
        for name in IMPORTS[module]
        if (other := name.split(".")[0]) in FLOORS and other != package and FLOORS[other] >= FLOORS[package]
    )
    assert upward == [], f"{module} imports from its own floor or above"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] in FORBIDDEN))
def test_no_floor_imports_what_it_must_run_without(module: str) -> None:
    banned = FORBIDDEN[module.split(".")[0]]
    assert sorted(n for n in IMPORTS[module] if n.split(".")[0] in banned) == []


def test_only_the_train_job_function_reaches_the_trainer() -> None:
    reaching = sorted(
        m for m in MODULES if m.startswith("jobs") and any(n.startswith("trainer") for n in IMPORTS[m])
    )
    assert reaching == ["jobs.train"]


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, names in IMPORTS.items():
        graph[module] = {n for n in names if n in MODULES and n != module}
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not nxt.startswith(node + "."):
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own modules, which import each other by their full name,
    # is not a circle of logic; every other back edge is.
    real = [c for c in cycles if not any(MODULES[m].name == "__init__.py" for m in c)]
    assert real == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module: str) -> None:
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES, "split it by concept"


def test_the_layers_test_sees_a_violation_when_there_is_one(tmp_path: Path) -> None:
    # The test above reads real files; this shows its reader catches a lazy upward import.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from service.main import create_app\n    return create_app\n")
    assert "service.main" in _imports(bad, "core.bad")
