from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ebmkit.cli import cli
from ebmkit.registry import Registries, default_registries, reset_default_registries
from ebmkit.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


@pytest.fixture
def registries() -> Registries:
    return default_registries()


@pytest.fixture
def fresh_registries():
    """Reload plugins now (after the test changed sys.path or the environment), and forget them after."""
    reset_default_registries()

    def load(**kwargs) -> Registries:
        reset_default_registries()
        return Registries(get_plugin_manager(**kwargs))

    yield load
    reset_default_registries()


@pytest.fixture
def run_cli():
    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def make_distribution(root: Path, dist_name: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Write an installed-looking distribution (a module plus its .dist-info) under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist_name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ebmkit]\n{entry_name or module} = {module}\n")
    return root
