"""Fixtures for testing ebmkit plugins, loaded by pytest through the ``pytest11`` entry point.

Installing ebmkit makes these fixtures available in any test suite, as ``pytester`` is for
pytest plugins:

- ``ebmkit_contract(kind, component, params=None, **collaborators)``: checks that a component
  obeys its kind's contract (shapes, detaching, determinism under a seed, state_dict round
  trip) and returns the names of the checks that ran; ``component`` is a registered name or a
  zero-argument callable that builds one. See :mod:`ebmkit._testkit.contract`.
- ``ebmkit_registries(*plugin_names, extra=())``: registries loaded from only the named
  entry points (``"mcmc"``, ``"toy"``, your plugin's name), plus plugin objects in ``extra``.
- ``ebmkit_register(plugin, name=None)``: registers a plugin object (a module, or an object
  with ``@ebmkit.hookimpl`` methods) for this test only; ``ebmkit.create``, recipes and the
  CLI run in this process see it. Returns the registries.
- ``ebmkit_cli(*args)``: runs the ``ebmkit`` command line in this test's temporary folder
  (the working directory during the call) and returns click's result (``exit_code``,
  ``output``). A user error exits 2 with its message in ``output``; an internal error raises.

This module imports nothing heavy until a fixture is used, so it costs nothing in test suites
that do not use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def ebmkit_contract(tmp_path: Path):
    """``ebmkit_contract(kind, name_or_build, params=None, *, dataset=None, energy=None, sampler=None, seed=0)``."""
    from ebmkit._testkit import contract

    def run(kind: str, component: Any, params: dict[str, Any] | None = None, **collaborators: Any) -> list[str]:
        collaborators.setdefault("out_dir", tmp_path / "contract")
        if isinstance(component, str):
            return contract.check_component(kind, component, params, **collaborators)
        if params:
            raise TypeError("params are for a registered component given by name; a build callable takes its own")
        return contract.check(kind, component, **collaborators)

    return run


@pytest.fixture
def ebmkit_registries():
    """``ebmkit_registries(*plugin_names, extra=())``: registries of only these plugins."""
    from ebmkit._host.plugins import get_plugin_manager
    from ebmkit._host.registry import Registries

    def load(*plugin_names: str, extra: tuple[object, ...] = ()) -> Any:
        return Registries(get_plugin_manager(only=plugin_names, extra=extra))

    return load


@pytest.fixture
def ebmkit_register():
    """``ebmkit_register(plugin, name=None)``: the plugin object is registered until the test ends."""
    from contextlib import ExitStack

    from ebmkit._host.installed import default_registries, registered

    with ExitStack() as stack:

        def register(plugin: object, name: str | None = None) -> Any:
            stack.enter_context(registered(plugin, name))
            return default_registries()

        yield register


@pytest.fixture
def ebmkit_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``ebmkit_cli(*args)``: the command line, run in the test's temporary folder."""
    from click.testing import CliRunner

    from ebmkit.cli import cli

    def invoke(*args: str | Path) -> Any:
        with monkeypatch.context() as patch:
            patch.chdir(tmp_path)
            return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    invoke.folder = tmp_path
    return invoke
