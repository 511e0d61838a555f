from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ebmkit.cli import cli
from ebmkit._host.plugins import AUTOLOAD_ENV, get_plugin_manager
from ebmkit._host.registry import Registries
from ebmkit._host.installed import default_registries, reset_default_registries

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


def is_compose_file(path: Path) -> bool:
    """recipes/ also holds compose files (``ebmkit compose --recipe``): a [compose] table, no training."""
    import tomllib

    return "compose" in tomllib.loads(path.read_text())


TRAINING_RECIPES = sorted(p for p in RECIPES.glob("*.toml") if not is_compose_file(p))
COMPOSE_FILES = sorted(p for p in RECIPES.glob("*.toml") if is_compose_file(p))

# Tests see ebmkit's own plugins only, whatever else is installed; a test that installs a
# third-party plugin turns autoload on for itself (install_plugin, plugin_env).
os.environ[AUTOLOAD_ENV] = "1"


def load_benchmark(name: str):
    """The script benchmarks/NAME.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def read_metrics(folder: Path) -> list[dict]:
    """The rows of a run folder's metrics.jsonl."""
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: on tiny tensors a second thread's synchronisation costs
    more than it saves, several times more on a busy machine (as ebmkit runs small energies)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def make_distribution(
    root: Path, dist_name: str, module: str, source: str, entry_name: str | None = None, version: str = "0.1"
) -> Path:
    """Write an installed-looking distribution (a module plus its .dist-info) under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    for old in root.glob(f"{dist_name.replace('-', '_')}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ebmkit]\n{entry_name or module} = {module}\n")
    return root


@pytest.fixture
def install_plugin(tmp_path, monkeypatch, fresh_registries):
    """``install_plugin(dist_name, module, source, ...)`` writes a plugin distribution onto sys.path
    and returns fresh registries with third-party autoload on."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)

    def install(dist_name: str, module: str, source: str, **kwargs) -> Registries:
        import importlib
        import sys

        make_distribution(root, dist_name, module, source, **kwargs)
        sys.modules.pop(module, None)
        importlib.invalidate_caches()
        return fresh_registries()

    install.root = root
    return install


def plugin_env(*roots: Path) -> dict[str, str]:
    """The environment of a subprocess that sees the plugins under ``roots`` (autoload on)."""
    env = {k: v for k, v in os.environ.items() if k != AUTOLOAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(map(str, roots))
    env["OMP_NUM_THREADS"] = "1"
    return env
