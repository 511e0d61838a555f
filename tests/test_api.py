"""The public module is the one door: plugins import nothing else, and its names and signatures
change only by a deliberate edit of the snapshot (tests/api_snapshot.txt, with CHANGELOG.md).

After changing the public API on purpose: ``python tests/test_api.py`` rewrites the snapshot.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest

import ebmkit

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).with_name("api_snapshot.txt")
PLUGINS = ROOT / "ebmkit" / "plugins"


def is_first_party_plugin(node: ast.AST) -> bool:
    """An import of one of ebmkit's own plugins (``ebmkit.plugins.<name>``): a package beside the
    public module, not a part of it."""
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("ebmkit.plugins.")
    if isinstance(node, ast.Import):
        return all(alias.name.startswith("ebmkit.plugins.") for alias in node.names)
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ebmkit" and node.attr == "plugins"


def private_imports(source: str) -> list[str]:
    """Every use of ebmkit other than its public names: ``from ebmkit.x import``, ``import ebmkit.x``,
    ``from ebmkit import name`` or ``ebmkit.name`` for a name not in ``ebmkit.__all__``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if is_first_party_plugin(node):  # another package, as a third party would import one
            continue
        if isinstance(node, ast.ImportFrom) and node.module and (node.module == "ebmkit" or node.module.startswith("ebmkit.")):
            if node.module != "ebmkit":
                found.append(f"line {node.lineno}: from {node.module} import ...")
            found += [f"line {node.lineno}: from ebmkit import {a.name}" for a in node.names if a.name not in ebmkit.__all__]
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.startswith("ebmkit.")]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ebmkit":
            if node.attr not in ebmkit.__all__:
                found.append(f"line {node.lineno}: ebmkit.{node.attr}")
    return found


def test_private_imports_are_found():
    source = ("import ebmkit\nimport ebmkit.loop\nfrom ebmkit.protocols import Needs\nfrom ebmkit import Needs, _hookimpl\nebmkit.energy\nebmkit.Needs\n"
              "from ebmkit.plugins.mcmc.chain import Chain\nimport ebmkit.plugins.nce\nebmkit.plugins.nce\n")
    assert private_imports(source) == [
        "line 2: import ebmkit.loop", "line 3: from ebmkit.protocols import ...", "line 4: from ebmkit import _hookimpl",
        "line 5: ebmkit.energy",
    ]


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_first_party_plugins_import_only_the_public_module(path):
    assert private_imports(path.read_text()) == []


def test_the_scaffolds_plugins_import_only_the_public_module():
    from ebmkit.plugins.scaffold.command import files_for
    from ebmkit.plugins.scaffold.templates import COMPONENTS

    for kind in COMPONENTS:
        for name, text in files_for("example", kind).items():
            if name.endswith(".py"):
                assert private_imports(text) == [], (kind, name)


def test_the_readme_and_docs_examples_import_only_the_public_module():
    """Code blocks that show a plugin or a script (```python) use only ``ebmkit``'s public names."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            try:
                found = private_imports(block)
            except SyntaxError:  # a fragment (a class body shown alone), not a program
                continue
            assert found == [], (page.relative_to(ROOT), found)


def describe(name: str, value: object) -> list[str]:
    """One line per public name (and per public function of a public module): what it is, and its
    signature. Addresses in default values are dropped so that the text is stable."""
    if inspect.ismodule(value):
        members = [m for m in vars(value) if not m.startswith("_") and inspect.isfunction(getattr(value, m))
                   and getattr(value, m).__module__ == value.__name__]
        return [f"{name}: module"] + [f"{name}.{m}{signature(getattr(value, m))}" for m in sorted(members)]
    if inspect.isclass(value):
        methods = [m for m, member in vars(value).items() if not m.startswith("_") and callable(member)]
        line = f"{name}: class{signature(value)}"
        return [line] + [f"{name}.{m}{signature(getattr(value, m))}" for m in sorted(methods)]
    if callable(value):
        return [f"{name}{signature(value)}"]
    return [f"{name} = {value!r}"]


def signature(value: object) -> str:
    try:
        text = str(inspect.signature(value))
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def api_text() -> str:
    lines = [f"# ebmkit {ebmkit.__version__}: the public API (python tests/test_api.py rewrites this file)"]
    for name in sorted(ebmkit.__all__, key=str.lower):
        if name != "__version__":
            lines += describe(name, getattr(ebmkit, name))
    return "\n".join(lines) + "\n"


def test_the_public_api_matches_its_snapshot():
    assert sorted(set(ebmkit.__all__)) == sorted(ebmkit.__all__), "a name is listed twice in ebmkit.__all__"
    assert api_text() == SNAPSHOT.read_text(), (
        "the public API changed: if on purpose, run `python tests/test_api.py`, and record the change in CHANGELOG.md"
    )


if __name__ == "__main__":
    SNAPSHOT.write_text(api_text())
    print(f"wrote {SNAPSHOT}", file=sys.stderr)


def test_the_0_1_import_paths_still_import_with_a_warning_naming_the_public_module():
    import subprocess

    script = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from ebmkit.protocols import Needs\n"
        "    from ebmkit.loop import train\n"
        "    import ebmkit.params\n"
        "import ebmkit\n"
        "assert Needs is ebmkit.Needs and train is ebmkit.train and ebmkit.params.component is ebmkit.component\n"
        "assert [str(w.message).split()[0] for w in caught if w.category is FutureWarning] == "
        "['ebmkit.protocols', 'ebmkit.loop', 'ebmkit.params'], [str(w.message) for w in caught]\n"
        "assert 'import what you need from ebmkit itself' in str(caught[0].message)\n"
        "import ebmkit._host.protocols as moved\n"
        "assert moved.__spec__.name == 'ebmkit._host.protocols'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_public_name_is_imported_lazily_from_where_the_type_checkers_see_it():
    tree = ast.parse((ROOT / "ebmkit" / "__init__.py").read_text())
    checking = next(node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING")
    seen = {(a.asname or a.name): (node.module, a.name) for node in checking.body if isinstance(node, ast.ImportFrom) for a in node.names}
    assert seen == ebmkit._EXPORTS
    assert set(ebmkit.__all__) == {*ebmkit._EXPORTS, "__version__"}
    for name in ebmkit.__all__:
        assert getattr(ebmkit, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'Energie'"):
        ebmkit.Energie  # noqa: B018


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["recipes"], ["run", "--help"], ["sample", "--help"]])
def test_the_command_line_answers_help_version_and_recipes_without_importing_torch(args):
    import os
    import subprocess

    code = ("import sys\nfrom ebmkit.cli import main\nsys.argv = ['ebmkit', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
