"""The layers of docs/ARCHITECTURE.md, read from the source: no module imports a layer above its own, and no
import cycle, counting imports inside functions (an import moved into a function to break a cycle still is
one)."""

from __future__ import annotations

import ast
from pathlib import Path

import kfts

PACKAGE = Path(kfts.__file__).parent
# a layer and the layers it may import (the top-level package only for __version__)
MAY_IMPORT = {
    "core": {"core"},
    "algorithms": {"core", "algorithms"},
    "jobs": {"core", "algorithms", "jobs"},
    "serving": {"core", "algorithms", "jobs", "serving"},
    "kubeflow": {"core", "algorithms", "jobs", "serving", "kubeflow"},  # deploy renders the predictor
    "cli": {"core", "algorithms", "jobs", "serving", "kubeflow", "cli"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["kfts", *path.relative_to(PACKAGE).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The kfts modules `path` imports anywhere in it (`from a import b` counts module a.b where b is one)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            }
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports(path, known) - {module} for module, path in known.items()}


def test_no_module_imports_a_layer_above_its_own():
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer(module) and target != "kfts" and layer(target) not in MAY_IMPORT[layer(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
    edges = graph()
    cycles, index, low, stack, counter = [], {}, {}, [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, cycles
