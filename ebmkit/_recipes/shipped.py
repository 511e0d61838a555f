"""The recipes that ship inside the package: listed, copied and run by name.

They are the repository's ``recipes/`` folder itself (the package's ``_recipes/catalog`` links to
it, and a wheel carries its files), so there is one source. A path always wins over a name:
``ebmkit run quickstart`` runs the shipped recipe unless ``./quickstart`` exists.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ebmkit._host.errors import EbmkitError, did_you_mean_hint

CATALOG = Path(__file__).resolve().parent / "catalog"


def names() -> list[str]:
    """The shipped recipes' names (their file names without ``.toml``), sorted."""
    return sorted(path.stem for path in CATALOG.glob("*.toml"))


def describe(name: str, width: int = 100) -> str:
    """The recipe's opening comment (after its ``# ebmkit ...`` command line), cut to ``width``
    characters at a word."""
    opening = []
    for line in (CATALOG / f"{name}.toml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        opening.append(line[1:])
    words: list[str] = []
    for text in opening:
        if not words and (not text.strip() or text.strip().startswith("ebmkit ")):
            continue  # the command line, and the blank line under it
        if not text.strip() or text.startswith("   "):
            break  # the end of the first paragraph, or an indented command
        words.append(text.strip())
    paragraph = " ".join(words)
    if len(paragraph) <= width:
        return paragraph
    return paragraph[: paragraph.rfind(" ", 0, width - 1)].rstrip(",;:") + "…"


def resolve(recipe: str) -> Path:
    """``recipe`` as a path when it names a file; else the shipped recipe of that name.

    :raises EbmkitError: neither a file nor a shipped recipe, with the nearest names.
    """
    if not recipe.strip():
        raise EbmkitError("the recipe is an empty string: give a recipe file or the name of a shipped recipe ('ebmkit recipes' lists them)")
    path = Path(recipe)
    if path.is_file() or path.suffix == ".toml" or len(path.parts) != 1:
        return path  # a path (reading it reports a missing file)
    if (CATALOG / f"{recipe}.toml").is_file():
        return CATALOG / f"{recipe}.toml"
    raise EbmkitError(
        f"no file {recipe!r} and no shipped recipe of that name{did_you_mean_hint(recipe, names())}; "
        "'ebmkit recipes' lists them"
    )


def copy(name: str, dest: str | None = None) -> Path:
    """Copy the shipped recipe ``name`` to ``dest`` (a folder, or a file path; default
    ``./NAME.toml``) and return where it went; an existing file is never overwritten."""
    if not (CATALOG / f"{name}.toml").is_file():
        raise EbmkitError(f"no shipped recipe {name!r}{did_you_mean_hint(name, names())}; 'ebmkit recipes' lists them")
    target = Path(dest) if dest is not None else Path(f"{name}.toml")
    if target.is_dir():
        target = target / f"{name}.toml"
    if target.exists():
        raise EbmkitError(f"{target} exists already; give another destination (ebmkit recipes copy {name} DEST)")
    if not target.parent.is_dir():
        raise EbmkitError(f"cannot write {target}: the folder {target.parent} does not exist")
    shutil.copyfile(CATALOG / f"{name}.toml", target)
    return target
