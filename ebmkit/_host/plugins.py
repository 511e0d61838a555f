"""Finding and loading plugins.

Nothing is loaded at import time: :func:`get_plugin_manager` builds a fresh manager each
time it is called. Two environment variables control it:

- ``EBMKIT_DISABLE_PLUGIN_AUTOLOAD=1``: load only the plugins of the ``ebmkit``
  distribution itself, no third-party ones.
- ``EBMKIT_DISABLED_PLUGINS=a,b``: never load the plugins with these entry-point names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback

from collections.abc import Collection

import attrs
import pluggy

from ebmkit._host import hookspecs
from ebmkit._host.errors import EbmkitError, did_you_mean_hint

ENTRY_POINT_GROUP = "ebmkit"
AUTOLOAD_ENV = "EBMKIT_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "EBMKIT_DISABLED_PLUGINS"
OWN_DISTRIBUTION = "ebmkit"
#: The core's own lifecycle plugins (like pytest's default plugins): registered directly,
#: always, after the entry points. They implement the lifecycle hooks the way any plugin would.
CORE_PLUGINS = ("ebmkit._engine.builtin.evaluation", "ebmkit._engine.builtin.metrics_file", "ebmkit._engine.builtin.progress")
#: Plugin objects registered in this process (:func:`registered`), as (name, object).
_in_process: list[tuple[str, object]] = []


@attrs.frozen
class PluginInfo:
    """A plugin that ebmkit tried to load, and what became of it."""

    name: str
    distribution: str
    version: str
    value: str
    error: str | None = None
    #: the full traceback of a plugin that raised while it was imported ('ebmkit plugins --traceback')
    traceback: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None


class EbmkitPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from and which failed."""

    def __init__(self) -> None:
        super().__init__("ebmkit")
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def distribution_of(self, plugin_name: str) -> tuple[str, str]:
        """(distribution, version) of a loaded plugin."""
        info = self.infos.get(plugin_name)
        return (info.distribution, info.version) if info else ("(registered in-process)", "")

    @property
    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if not info.loaded]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, importlib.metadata.Distribution]]:
    found, seen = [], set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            # The same distribution can be visible twice on sys.path (e.g. editable + build dir).
            key = (ep.group, ep.name, ep.value, dist.metadata["Name"])
            if ep.group == ENTRY_POINT_GROUP and key not in seen:
                seen.add(key)
                found.append((ep, dist))
    return sorted(found, key=lambda pair: (pair[1].metadata["Name"] != OWN_DISTRIBUTION, pair[0].name))


def get_plugin_manager(
    *, autoload: bool | None = None, only: Collection[str] | None = None, extra: Collection[object] = ()
) -> EbmkitPluginManager:
    """Build a plugin manager and load the ``ebmkit`` entry points into it.

    :param autoload: load third-party plugins; by default, unless
        ``EBMKIT_DISABLE_PLUGIN_AUTOLOAD`` is set. ebmkit's own plugins always load.
    :param only: load only the entry points with these names (``("toy", "mcmc")``), first-party
        or not; ``autoload`` is then ignored. An unknown name is an error.
    :param extra: plugin objects (modules, or objects with ``@ebmkit.hookimpl`` methods) to
        register after the entry points, as a test registers the plugin it checks. Objects
        registered with :func:`registered` are added too.
    :return: the manager. A plugin that raised while loading, or that implements a hook
        ebmkit does not define (a misspelled hook), is not registered; it is listed in
        ``pm.failures`` with its error, and every other plugin works.
    """
    if autoload is None:
        autoload = not _env_flag(AUTOLOAD_ENV)
    pm = EbmkitPluginManager()
    for name in filter(None, (n.strip() for n in os.environ.get(BLOCK_ENV, "").split(","))):
        pm.set_blocked(name)

    entry_points = _entry_points()
    if only is not None:
        _check_names(only, [ep.name for ep, _ in entry_points])
    for ep, dist in entry_points:
        dist_name, version = dist.metadata["Name"], dist.version
        if only is not None:
            if ep.name not in only:
                continue
        elif pm.is_blocked(ep.name) or (not autoload and dist_name != OWN_DISTRIBUTION):
            continue
        info = PluginInfo(ep.name, dist_name, version, ep.value)
        if ep.name in pm.infos:
            other = pm.infos[ep.name]
            pm.infos[f"{ep.name} ({dist_name})"] = attrs.evolve(
                info, error=f"plugin name {ep.name!r} is already taken by distribution {other.distribution!r}"
            )
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            info = attrs.evolve(info, error=detail, traceback="".join(traceback.format_exception(exc)))
        pm.infos[ep.name] = info

    for module in CORE_PLUGINS:
        pm.register(importlib.import_module(module), name=module)
        pm.infos[module] = PluginInfo(module, OWN_DISTRIBUTION, importlib.metadata.version(OWN_DISTRIBUTION), module)
    for name, plugin in [*_in_process, *((_name_of(p), p) for p in extra)]:
        if pm.is_registered(plugin):
            continue
        if name in pm.infos:
            raise EbmkitError(f"a plugin named {name!r} is already loaded; register the object under another name")
        pm.register(plugin, name=name)
    _leave_out_unknown_hooks(pm)
    pm.check_pending()
    return pm


def _name_of(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or f"{type(plugin).__name__}@{id(plugin):x}"


def _check_names(only: Collection[str], available: list[str]) -> None:
    for name in only:
        if name not in available:
            hint = did_you_mean_hint(name, available)
            raise EbmkitError(f"no ebmkit plugin is installed under the entry-point name {name!r}{hint}\n installed: {', '.join(sorted(set(available)))}")


def _leave_out_unknown_hooks(pm: EbmkitPluginManager) -> None:
    """Unregister every plugin that implements a hook with no spec, and say which hook it meant."""
    known = [name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None) is not None]
    for name, caller in list(vars(pm.hook).items()):
        if getattr(caller, "spec", None) is not None:
            continue
        for impl in caller.get_hookimpls():
            message = f"implements {name!r}, which is not an ebmkit hook"
            message += did_you_mean_hint(name, known) or " (ebmkit hooks lists them)"
            plugin_name = impl.plugin_name
            info = pm.infos.get(plugin_name) or PluginInfo(plugin_name, "(registered in-process)", "", repr(impl.plugin))
            pm.infos[plugin_name] = attrs.evolve(info, error=f"{info.error}; {message}" if info.error else message)
            if pm.is_registered(impl.plugin):
                pm.unregister(impl.plugin)
