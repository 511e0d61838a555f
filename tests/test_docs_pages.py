"""The user docs work: every relative link resolves, and every block marked runnable runs.

Markers, each an HTML comment on the line right before a fenced block:

- ``<!-- runnable -->`` before a ```` ```python ```` block: the test runs it.
- ``<!-- file: PATH -->`` before any block: the test writes the block to PATH first (a plugin
  module or a recipe that a runnable block of the same page uses).
- ``<!-- setup: COMMAND -->`` on its own line: an ``ebmkit`` command the test runs first (a
  short version of a command the page shows, so that a later block finds its run folder).

The blocks of one page run in document order, in one temporary folder holding a copy of
``recipes/`` (as the repository root would) and on ``sys.path`` (as a script's own folder is).
They run in the test's process, each as a script of its own (``runpy``, fresh globals, so a
block must import what it uses), and the setup commands through the CLI in the same process:
a fresh ``python`` per block cost a torch import each, most of this file's time. The modules a
page writes are forgotten after it, so that the next page imports its own.
"""

from __future__ import annotations

import os
import re
import runpy
import shlex
import shutil
import sys
import time
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from ebmkit.cli import cli
from tests.conftest import ROOT

PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^(\s*)(```+|~~~+)(.*)$")
MARKER = re.compile(r"^<!--\s*(runnable|file|setup)\s*(?::\s*(.*?))?\s*-->\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+).+?\1")
#: The longest a runnable block may take (the whole file must stay under a minute on 2 cores).
BLOCK_TIMEOUT_S = 60


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix() if page.is_relative_to(ROOT) else str(page)


# -- reading pages --------------------------------------------------------------------------------
@attrs.frozen
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: str | None = None  # "runnable" or "file"
    argument: str | None = None  # the file's path


@attrs.frozen
class Setup:
    page: Path
    line: int
    command: str


def read_page(page: Path) -> tuple[list[str], list[Block | Setup]]:
    """The lines of prose (code blocks blanked out), and the blocks and setup commands in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    prose: list[str] = []
    items: list[Block | Setup] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = FENCE.match(line)
        if opened:
            fence, language = opened.group(2), opened.group(3).strip().split(" ")[0]
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            marker = argument = None
            previous = MARKER.match(lines[start - 1].strip()) if start > 0 else None
            if previous and previous.group(1) in ("runnable", "file"):
                marker, argument = previous.group(1), previous.group(2)
            indent = len(opened.group(1))
            text = "\n".join(b[indent:] if b[:indent].isspace() else b for b in body) + "\n"
            items.append(Block(page, start + 1, language, text, marker, argument))
            prose.extend("" for _ in range(i - start + 1))
            i += 1
            continue
        found = MARKER.match(line.strip())
        if found and found.group(1) == "setup":
            items.append(Setup(page, i + 1, found.group(2) or ""))
        prose.append(line)
        i += 1
    return prose, items


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped (but - and _), spaces -> -."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = read_page(page)
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image outside code."""
    prose, _ = read_page(page)
    found = []
    for number, line in enumerate(prose, 1):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


# -- links ----------------------------------------------------------------------------------------
def broken_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page_id(page)}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: {resolved} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {page_id(resolved)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_catches_a_broken_link_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with punctuation!\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#a-code-heading-with-punctuation) [web](https://example.org/x)\n"
        "[gone](missing.md) [bad](other.md#nope) `[not a link](nowhere.md)`\n"
        "```\n[inside a block](nowhere.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "#nope" in problems[1]


def test_the_index_lists_every_page():
    index = ROOT / "docs" / "index.md"
    listed = {(index.parent / target.partition("#")[0]).resolve() for _, target in links(index)}
    missing = [page_id(page) for page in PAGES if page.is_relative_to(ROOT / "docs") and page != index and page.resolve() not in listed]
    assert missing == [], "docs/index.md does not list these pages"


# -- runnable blocks ------------------------------------------------------------------------------
RUNNABLE_PAGES = [page for page in PAGES if any(
    isinstance(item, Block) and item.marker == "runnable" for item in read_page(page)[1]
)]


def test_runnable_blocks_are_python():
    for page in PAGES:
        for item in read_page(page)[1]:
            if isinstance(item, Block) and item.marker == "runnable":
                assert item.language == "python", f"{page_id(page)}:{item.line}: only python blocks can be runnable"


@pytest.fixture
def page_folder(tmp_path, monkeypatch, one_thread):
    """A folder like the repository root, the working directory and first on ``sys.path``."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def within_time(started: float, what: str) -> None:
    took = time.perf_counter() - started
    assert took < BLOCK_TIMEOUT_S, f"{what} took {took:.0f} s, more than {BLOCK_TIMEOUT_S} s"


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=page_id)
def test_runnable_blocks_run(page, page_folder):
    for item in read_page(page)[1]:
        where = f"{page_id(page)}:{item.line}"
        started = time.perf_counter()
        if isinstance(item, Setup):
            words = shlex.split(item.command)
            assert words and words[0] == "ebmkit", f"{where}: a setup command runs ebmkit, got {item.command!r}"
            done = CliRunner().invoke(cli, words[1:])
            assert done.exit_code == 0, f"setup at {where} exited with {done.exit_code}:\n{done.output[-6000:]}"
            within_time(started, f"setup at {where}")
        elif item.marker == "file":
            target = page_folder / item.argument
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.text, encoding="utf-8")
        elif item.marker == "runnable":
            script = page_folder / f"_block_line{item.line}.py"
            script.write_text(item.text, encoding="utf-8")
            try:
                runpy.run_path(str(script), run_name="__main__")
            except BaseException as error:
                error.add_note(f"raised by the block at {where}")
                raise
            within_time(started, f"the block at {where}")
