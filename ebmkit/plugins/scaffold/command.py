"""The ``new-plugin`` command: writes a plugin package that installs, tests and trains as it is."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import string
from pathlib import Path

import click

import ebmkit
from ebmkit import EbmkitError
from ebmkit.plugins.scaffold.templates import COMPONENTS, FILES

NAME = re.compile(r"[a-z][a-z0-9]*([_-][a-z0-9]+)*\Z")
#: The entry-point group every ebmkit plugin is registered under.
ENTRY_POINT_GROUP = "ebmkit"


def files_for(name: str, kind: str) -> dict[str, str]:
    """The package's files (path -> text) for a plugin ``name`` whose example component is a
    ``kind``; a hyphen in ``name`` is an underscore in the component's and the module's names."""
    if not NAME.match(name):
        raise EbmkitError(
            f"plugin name {name!r}: use lowercase letters, digits, hyphens and underscores, starting with a letter "
            "(it names the component, the module ebmkit_<name> and the package ebmkit-<name>)"
        )
    name = name.replace("-", "_")
    component = COMPONENTS[kind]
    values = {
        "name": name, "module": f"ebmkit_{name}", "dist": f"ebmkit-{name.replace('_', '-')}",
        "Class": "".join(part.title() for part in name.split("_")), "kind": kind, "kinds": component.registry,
        "params": component.params, "checks": component.checks, "summary": component.summary,
    }
    out = {}
    for path, text in {**FILES, "src/$module/$name.py": component.code, "recipes/$name.toml": component.recipe}.items():
        out[string.Template(path).substitute(values)] = string.Template(text).substitute(values)
    return out


def refuse_a_taken_name(name: str, kind: str) -> None:
    """Raise when the package the scaffold would write meets one that is installed: its module
    ``ebmkit_<name>`` can already be imported (one would shadow the other), its entry-point name is
    another plugin's, or its component's name is taken in its kind (the plugin would fail to load)."""
    module = f"ebmkit_{name}"
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is not None:
        owners = importlib.metadata.packages_distributions().get(module, [])
        owner = f" (from the installed distribution {', '.join(sorted(set(owners)))})" if owners else ""
        refuse(f"the module {module} exists already{owner}: a plugin package of that name would shadow it or be shadowed by it")
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name == name:
            owner = point.dist.metadata["Name"] if point.dist else "an installed distribution"
            refuse(f"a plugin named {name!r} is installed already ({point.value}, from {owner}): two plugins of one name cannot both load")
    registry = COMPONENTS[kind].registry
    if name in ebmkit.list_components(registry):
        refuse(f"the {registry} registry has a component named {name!r} already: a second one would not load")


def refuse(problem: str) -> None:
    raise EbmkitError(f"{problem}; choose another name (nothing was written)")


@click.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(sorted(COMPONENTS)), default="transition", show_default=True,
              help="the kind of the example component")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              help="where to create the package's folder")
def new_plugin(name: str, kind: str, parent: Path) -> None:
    """Scaffold a plugin package NAME with one example component of a chosen kind.

    It writes ebmkit-NAME/ with a pyproject.toml (the 'ebmkit' entry point), the component, a
    test that uses ebmkit's pytest fixtures, a recipe that trains with the component, and a
    README. Then: pip install -e ebmkit-NAME, pytest ebmkit-NAME/tests.
    """
    files = files_for(name, kind)
    name = name.replace("-", "_")
    refuse_a_taken_name(name, kind)
    root = parent / f"ebmkit-{name.replace('_', '-')}"
    if root.exists():
        raise EbmkitError(f"{root} already exists; choose another name or --dir (nothing was written)")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    click.echo(f"wrote {root}/ with a {kind} '{name}':")
    for relative in sorted(files):
        click.echo(f"  {relative}")
    click.echo(f"next:\n  pip install -e {root}\n  pytest {root}/tests\n  ebmkit run {root}/recipes/{name}.toml")
