"""The core's folders are its parts, and its imports go one way (docs/architecture.md).

The graph is read from the source: every ``import`` of one ebmkit module by another, at module
level or inside a function. Imports under ``if TYPE_CHECKING:`` are left out: they are never
executed, and exist so that annotations can name a type of a higher part (a hook's ``run``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ebmkit"

#: Each part, and the parts it may import. The package itself (the public module), the command
#: line and the 0.1 import paths sit above them all.
PARTS = {
    "_host": set(),
    "_recipes": {"_host"},
    "_engine": {"_host", "_recipes"},
    "_model": {"_host", "_recipes", "_engine"},
    "_testkit": {"_host", "_recipes", "_engine", "_model", "cli"},
    # ebmkit's own plugins: the public module and each other, as a third party's would.
    "plugins": {"ebmkit"},
}
CORE = {part for part in PARTS if part != "plugins"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def imported(tree: ast.AST, here: str, modules: set[str]) -> set[str]:
    """The ebmkit modules that ``tree`` (the module ``here``) imports when it runs."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(name for name in names if name in modules and name != here)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imported(ast.parse(path.read_text()), name, modules) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def part_of(module: str) -> str:
    """``_host`` for ``ebmkit._host.registry``; ``cli``, ``__main__``... for the top-level modules;
    ``ebmkit`` for the package itself."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "ebmkit"


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_core_imports_another_in_a_circle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_imports_only_the_parts_below_it(part):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items() if part_of(module) == part
        for target in targets if part_of(target) not in PARTS[part] | {part}
    )
    assert wrong == []


def test_the_package_is_the_cores_five_parts_the_front_door_and_the_plugins():
    top = sorted(path.name for path in PACKAGE.iterdir() if not path.name.startswith((".", "__pycache__")))
    assert top == ["__init__.py", "__main__.py", "_deprecated.py", *sorted(CORE), "cli.py", "plugins"]


def test_nothing_outside_the_plugins_imports_one():
    """ebmkit's own plugins are found through their entry points, like anyone's: the core, the
    command line and the public module never import them."""
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items() if part_of(module) != "plugins"
        for target in targets if part_of(target) == "plugins"
    )
    assert wrong == []


def test_no_function_of_the_core_is_over_60_lines():
    """Counted from ``def`` to its last line, docstring included."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_one_helper_answers_every_unknown_name():
    """The "did you mean" of an unknown name is built by ``did_you_mean_hint`` alone."""
    builders = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "did you mean" in path.read_text() and path.name != "errors.py"
    ]
    assert builders == []
