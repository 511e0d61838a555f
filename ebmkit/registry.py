"""Registries of components, filled by the plugins' registration hooks."""

from __future__ import annotations

import fnmatch
import inspect
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from ebmkit import params as params_
from ebmkit.errors import DuplicateComponentError, EbmkitError, UnknownComponentError, singular
from ebmkit.plugins import EbmkitPluginManager, get_plugin_manager

#: Each kind of component, and the context keywords its factories may accept.
KINDS: dict[str, tuple[str, ...]] = {
    "energies": ("data_shape", "num_classes"),
    "samplers": ("transitions",),
    "transitions": (),
    "buffers": ("noise",),
    "losses": (),
    "optimizers": ("params",),
    "evaluators": (),
    "datasets": (),
}


@attrs.frozen
class Entry:
    """One registered component: its name, how to build it, and who supplied it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type
    plugin: str
    distribution: str
    summary: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def owner(self) -> str:
        return f"{singular(self.kind)} {self.name!r}"

    def check(
        self, values: Mapping[str, Any], where: str, resolve: params_.Resolver | None = None
    ) -> tuple[dict[str, Any] | None, list]:
        """Check recipe values against this component's parameter spec."""
        return params_.check(self.params, values, where, self.owner, resolve)

    def build(self, values: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Build the component from checked parameter values and the run context.

        Only the context keywords the factory accepts are passed to it.
        """
        kwargs = {k: (v.build() if isinstance(v, ComponentSpec) else v) for k, v in (values or {}).items()}
        try:
            signature = inspect.signature(self.factory)
            accepts_all = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
            accepted = set(signature.parameters)
        except (TypeError, ValueError):
            accepts_all, accepted = True, set()
        kwargs.update({k: v for k, v in context.items() if accepts_all or k in accepted})
        return self.factory(**kwargs)


@attrs.frozen
class ComponentSpec:
    """A component as a recipe gives it: its entry and checked parameter values.

    ``core`` holds the keys the runner owns (``weight``, ``every``); ``where`` is the TOML path.
    """

    entry: Entry
    values: dict[str, Any]
    where: str
    core: dict[str, Any] = attrs.field(factory=dict)

    def build(self, **context: Any) -> Any:
        return self.entry.build(self.values, **context)


class Registry(Mapping[str, Entry]):
    """The components of one kind, by name (aliases resolve to their entry)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def add(self, entry: Entry) -> None:
        for name in (entry.name, *entry.aliases):
            existing = self._entries.get(self._aliases.get(name, name))
            if existing is not None:
                raise DuplicateComponentError(
                    f"{entry.owner} from plugin {entry.plugin!r} ({entry.distribution}) conflicts with "
                    f"{existing.owner} from plugin {existing.plugin!r} ({existing.distribution}); "
                    f"uninstall one of them or block one with EBMKIT_DISABLED_PLUGINS"
                )
        self._entries[entry.name] = entry
        self._aliases.update({alias: entry.name for alias in entry.aliases})

    def __getitem__(self, name: str) -> Entry:
        entry = self._entries.get(self._aliases.get(name, name))
        if entry is None:
            raise UnknownComponentError(self.kind, name, self.names())
        return entry

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._aliases.get(name, name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def find(self, pattern: str = "*") -> list[Entry]:
        """Entries whose name (or an alias) matches an fnmatch pattern."""
        return [
            e for name, e in sorted(self._entries.items())
            if any(fnmatch.fnmatchcase(n, pattern) for n in (name, *e.aliases))
        ]


class Registries(Mapping[str, Registry]):
    """All registries, filled from a plugin manager.

    Registration hooks are called once per plugin, so every entry records its plugin and
    distribution. A plugin whose registration raises is reported in ``failures`` and
    does not take the others down; a name registered twice raises.
    """

    def __init__(self, pm: EbmkitPluginManager):
        self.pm = pm
        self._kinds = {kind: Registry(kind) for kind in KINDS}
        self.failures: dict[str, str] = {info.name: info.error or "" for info in pm.failures}
        for plugin in pm.get_plugins():
            plugin_name = pm.get_name(plugin) or repr(plugin)
            try:
                self._collect(plugin, plugin_name)
            except DuplicateComponentError:
                raise
            except Exception as exc:
                self.failures[plugin_name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()

    def _collect(self, plugin: object, plugin_name: str) -> None:
        distribution = self.pm.distribution_of(plugin_name)
        for kind, context_names in KINDS.items():
            caller = getattr(self.pm.hook, f"ebmkit_register_{kind}")

            def register(name, factory, *, params=None, summary=None, aliases=(), _kind=kind, _ctx=context_names):
                if not isinstance(name, str) or not name:
                    raise EbmkitError(f"plugin {plugin_name!r} registered a {singular(_kind)} without a name")
                doc = inspect.getdoc(factory) or ""
                entry = Entry(
                    kind=_kind,
                    name=name,
                    factory=factory,
                    params=params_.spec_of(factory, params, _ctx),
                    plugin=plugin_name,
                    distribution=distribution,
                    summary=summary or (doc.splitlines()[0] if doc else ""),
                    aliases=tuple(aliases),
                )
                self._kinds[_kind].add(entry)

            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(**{arg: register for arg in impl.argnames})

    def __getitem__(self, kind: str) -> Registry:
        if kind not in self._kinds:
            raise UnknownComponentError("component kinds", kind, list(self._kinds))
        return self._kinds[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def get(self, kind: str, name: str) -> Entry:  # type: ignore[override]
        """The entry ``name`` of ``kind``; raises :class:`UnknownComponentError` with help."""
        return self[kind][name]


_default: Registries | None = None


def default_registries() -> Registries:
    """The process-wide registries, loaded on first use (not at import)."""
    global _default
    if _default is None:
        _default = Registries(get_plugin_manager())
    return _default


def reset_default_registries() -> None:
    """Forget the process-wide registries, so the next use reloads the plugins."""
    global _default
    _default = None
