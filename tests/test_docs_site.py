"""The docs site builds in strict mode (a broken link, a missing page or anchor fails it), with the
API reference generated from the public module's docstrings, and no public name lacks one."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ebmkit

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_site_builds_strict_with_the_api_reference(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    api = (site / "api" / "index.html").read_text()
    for name in ("TrainBatch", "e_pos_mean", "save_grid", "hookimpl", "EbmkitError"):
        assert name in api, name
    assert (site / "getting_started" / "index.html").exists() and (site / "plugin_hooks" / "index.html").exists()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](gone.md)\n")
    (tmp_path / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text().replace("  - mkdocstrings:", "  - mkdocstrings:\n      enabled: false", 1))
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "gone.md" in done.stderr


@pytest.mark.parametrize("name", [n for n in ebmkit.__all__ if n not in ("__version__", "INFINITE_OK", "hookimpl")])
def test_every_public_name_has_a_docstring_of_its_own(name):
    value = getattr(ebmkit, name)
    own = vars(value).get("__doc__") if inspect.isclass(value) else value.__doc__
    assert own and own.strip(), f"ebmkit.{name} has no docstring"
