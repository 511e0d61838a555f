"""The registries of the installed plugins, loaded once per process on first use (never at
import), and the calls that use them: ``ebmkit.registries``, ``ebmkit.create``,
``ebmkit.list_components`` and ``ebmkit.registered``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ebmkit._host.plugins import _in_process, _name_of, get_plugin_manager
from ebmkit._host.registry import Registries


_default: Registries | None = None
_manager: Any = None


def default_plugin_manager() -> Any:
    """The process-wide plugin manager: the installed plugins loaded (their top-level modules
    imported) but nothing registered yet, which is all the command line needs to list commands."""
    global _manager
    if _manager is None:
        _manager = get_plugin_manager()
    return _manager


def default_registries() -> Registries:
    """The process-wide registries, loaded on first use (not at import)."""
    global _default
    if _default is None:
        _default = Registries(default_plugin_manager())
    return _default


def reset_default_registries() -> None:
    """Forget the process-wide registries, so the next use reloads the plugins."""
    global _default, _manager
    _default = _manager = None


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build a registered component by name: its parameters are checked first, as in a recipe.

    :param kind: the kind, plural or singular (``"samplers"`` or ``"sampler"``).
    :param kwargs: the component's parameters, plus any context keywords of its kind
        (``data_shape=(2,)`` for an energy). A nested component is a dict with a ``name``
        (``transitions=[{"name": "langevin", "step_size": 0.01}]``) or a built object.
    :raises RecipeError: listing every problem with the parameters.

    >>> sampler = ebmkit.create("sampler", "chain", steps=50, transitions=[{"name": "mala", "step_size": 0.05}])
    """
    return default_registries().create(kind, name, **kwargs)


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """The names of the registered components of ``kind`` that match an fnmatch ``pattern``.

    >>> ebmkit.list_components("transitions", "*langevin*")
    """
    return [entry.name for entry in default_registries()[kind].find(pattern)]


@contextmanager
def registered(plugin: object, name: str | None = None) -> Iterator[object]:
    """Register a plugin object in this process for the duration of the block.

    Every plugin manager built inside the block (``ebmkit.registries()``, the CLI run in this
    process, ``ebmkit.create``) includes it; the process-wide registries are reloaded on
    entry and on exit. A subprocess (``torchrun``, ``ebmkit run`` in a shell) does not see it:
    install the plugin for that.
    """
    entry = (name or _name_of(plugin), plugin)
    _in_process.append(entry)
    reset_default_registries()
    try:
        yield plugin
    finally:
        _in_process.remove(entry)
        reset_default_registries()
