"""The import paths of ebmkit 0.1 that plugins and scripts used before the public module: each
still imports, with a FutureWarning that names what to import from ``ebmkit`` instead.

In 0.1 a plugin imported ``ebmkit.protocols``, ``ebmkit.params`` and nine more core modules, and
the docs trained from Python through ``ebmkit.loop``, ``ebmkit.recipe``, ``ebmkit.run`` and
``ebmkit.plugins``. Those modules now live, private by name, in the core's parts; this finder
answers the old names with the moved modules, as timm's shim modules do, so that a plugin written
for 0.1 keeps working while it moves to ``ebmkit``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings

#: The 0.1 module -> the module it is now. Only the paths that 0.1's docs or plugins used.
MOVED = {
    "ebmkit.checked": "ebmkit._host.checked",
    "ebmkit.console": "ebmkit._host.console",
    "ebmkit.data": "ebmkit._host.data",
    "ebmkit.energy": "ebmkit._host.energy",
    "ebmkit.errors": "ebmkit._host.errors",
    "ebmkit.kinds": "ebmkit._host.kinds",
    "ebmkit.params": "ebmkit._host.params",
    "ebmkit.plugins": "ebmkit._host.plugins",
    "ebmkit.protocols": "ebmkit._host.protocols",
    "ebmkit.random": "ebmkit._host.random",
    "ebmkit.registry": "ebmkit._host.registry",
    "ebmkit.recipe": "ebmkit._recipes.recipe",
    "ebmkit.loop": "ebmkit._engine.loop",
    "ebmkit.run": "ebmkit._engine.run",
    "ebmkit.speed": "ebmkit._engine.speed",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} is internal since ebmkit 0.2: import what you need from ebmkit itself "
            f"(ebmkit.__all__ lists it; CHANGELOG.md says what moved)",
            FutureWarning,
            stacklevel=2,
        )
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # The module is the moved one, already imported: nothing to run. The import system
        # bound the old name to it in sys.modules (later imports do not warn again) and set its
        # __spec__ to the old name's: give the module its own back.
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    """Answer the 0.1 import paths (once per process)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
