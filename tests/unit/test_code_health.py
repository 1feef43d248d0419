"""The house rules, checked: ruff is clean, abe's layers import one way, no import cycle."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from abe import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "abe"
# From the bottom up: a module may import from its own layer and the layers below it.
LAYERS = ["core", "envs", "agent", "training", "tracking", "sweeps", "commands"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def abe_imports(path: Path) -> set[str]:
    """Every abe module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "abe"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "abe":
            found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): abe_imports(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    """-1 for the package root (paths only), len(LAYERS) for `python -m abe`."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] == "__main__":
        return len(LAYERS)
    return LAYERS.index(parts[1])


def test_every_module_lives_in_a_layer():
    for module in import_graph():
        assert module == "abe" or module == "abe.__main__" or module.split(".")[1] in LAYERS, module


def test_no_layer_imports_a_higher_one():
    upward = [
        f"{module} ({LAYERS[layer(module)]}) imports {imported}"
        for module, imports in import_graph().items()
        for imported in imports
        if 0 <= layer(module) < layer(imported)
    ]
    assert not upward, "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other in a ring."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    return [g for g in groups if len(g) > 1 or g[0] in graph.get(g[0], ())]


def test_no_import_cycles():
    assert strongly_connected(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["c", "b", "a"]]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    proc = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


# A dependency's private names (modules or attributes with a leading underscore that abe
# reaches into), test doubles in production code and swapped classes. Only
# abe/core/compat.py may hold such a use, each checked by tests/unit/test_compat.py.
PRIVATE_USE = re.compile(
    r"\b_impl\b|hydra\._internal|\b_core\b|_launcher_util|unittest import mock|\bmock\.patch|__class__ = "
    r"|\b(?!self\b)\w+\._(storage|trial_id|study_id|optim|eps|send|recv|spec|state_keys|action_keys)\b"
    r"|sys\.modules\.get"
)


def private_uses(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if PRIVATE_USE.search(line) and not line.strip().startswith("#")]


def test_no_private_names_of_dependencies_outside_compat():
    files = [p for p in [*PACKAGE.rglob("*.py"), PROJECT_ROOT / "run.py"] if p.name != "compat.py"]
    found = [f"{p.relative_to(PROJECT_ROOT)}: {line}" for p in files for line in private_uses(p.read_text())]
    assert not found, "\n".join(found)


def test_the_private_name_check_finds_each_kind():
    for line in ["from hydra._internal.utils import x", "study._storage.get()", "algo._eps + 1", "x.__class__ = Y"]:
        assert private_uses(line), line
    assert not private_uses("self._storage = storage")
