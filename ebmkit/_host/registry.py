"""Registries of components, filled by the plugins' registration hooks, and the one way to build one."""

from __future__ import annotations

import fnmatch
import inspect
import traceback
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ebmkit._host import params as params_
from ebmkit._host.errors import ComponentBuildError, EbmkitError, RecipeError, RecipeProblem, UnknownComponentError, allocation_asked
from ebmkit._host.kinds import KINDS, Key, Kind, kind_named

if TYPE_CHECKING:
    from ebmkit._host.plugins import EbmkitPluginManager


@attrs.frozen
class Entry:
    """One registered component: its name, how to build it, and who supplied it.

    :ivar requires: capabilities the component needs from other components of a recipe,
        e.g. ``("reference_set",)``; validation checks that some component provides each.
    :ivar provides: capabilities it offers to the others.
    """

    kind: Kind
    name: str
    factory: Callable[..., Any]
    params: type
    plugin: str
    distribution: str
    version: str
    summary: str = ""
    aliases: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``energy 'mlp'``."""
        return f"{self.kind.singular} {self.name!r}"

    @property
    def source(self) -> str:
        """``plugin 'toy' (ebmkit 0.1.0)``."""
        return f"plugin {self.plugin!r} ({self.distribution} {self.version})"

    def check(self, values: Mapping[str, Any], where: str, resolve: params_.Resolver | None = None):
        """Check parameter values against this component's spec: (every value, problems)."""
        return params_.check(self.params, values, where, self.label, resolve)

    def build(self, values: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Call the factory with parameter values and the context keywords it accepts."""
        kwargs = dict(values or {})
        try:
            signature = inspect.signature(self.factory)
            accepts_all = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
            accepted = set(signature.parameters)
        except (TypeError, ValueError):
            accepts_all, accepted = True, set()
        kwargs.update({k: v for k, v in context.items() if k in self.kind.context and (accepts_all or k in accepted)})
        return self.factory(**kwargs)


def _build_nested(value: Any, context: dict[str, Any], on_built: Callable | None) -> Any:
    def one(item: Any) -> Any:
        if not isinstance(item, ComponentSpec):
            return item
        built = item.build(on_built=on_built, **context)
        return params_.Keyed(built, dict(item.keys)) if item.keys else built

    return [one(v) for v in value] if isinstance(value, list) else one(value)


@attrs.frozen
class ComponentSpec:
    """A component as a recipe (or :func:`create`) gives it: its entry and every parameter's value.

    :ivar values: the checked parameters, defaults included; nested components are specs.
    :ivar where: the TOML path, for messages.
    :ivar keys: the keys the owner of the table reads (a loss's ``weight``, a chain's ``every``).
    """

    entry: Entry
    values: dict[str, Any]
    where: str
    keys: dict[str, Any] = attrs.field(factory=dict)

    def build(self, *, on_built: Callable[[ComponentSpec, Any], None] | None = None, **context: Any) -> Any:
        """Build nested components first, then this one, and check it against its kind's protocol.

        :param context: the run's context keywords; each factory gets those of its kind.
        :param on_built: called with each spec and what it built, nested ones included.
        :raises ComponentBuildError: naming the TOML path of the component that failed.
        """
        values = {k: _build_nested(v, context, on_built) for k, v in self.values.items()}
        try:
            built = self.entry.build(values, **context)
        except ComponentBuildError:
            raise
        except (EbmkitError, ValueError, TypeError, OSError) as exc:  # a factory refusing its input
            raise ComponentBuildError(self.where, f"{self.entry.label}: {exc}") from exc
        except (MemoryError, RuntimeError) as exc:
            asked = allocation_asked(exc)
            if asked is None:
                raise
            raise ComponentBuildError(self.where, f"{self.entry.label}: its parameters ask for more memory than there is ({asked or exc})") from exc
        protocol = self.entry.kind.protocol_type()
        if not isinstance(built, protocol):
            # ebmkit's protocols by their public name (ebmkit.Sampler), others by their module's
            module = "ebmkit" if protocol.__module__.startswith("ebmkit._") else protocol.__module__
            raise ComponentBuildError(
                self.where, f"{self.entry.label} ({self.entry.source}) built a {type(built).__name__}, which is not "
                f"a {module}.{protocol.__name__}"
            )
        _remember(built, f"{self.entry.label} ({self.entry.source}, at {self.where})")
        if on_built is not None:
            on_built(self, built)
        return built

    def nested(self) -> Iterator[ComponentSpec]:
        """This spec and every spec nested in it, depth first."""
        yield self
        for value in self.values.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, ComponentSpec):
                    yield from item.nested()

    def record(self) -> dict[str, Any]:
        """Everything needed to build it again: name, every parameter, keys, and its provenance."""
        params = {}
        for key, value in self.values.items():
            if isinstance(value, ComponentSpec) or (isinstance(value, list) and value and isinstance(value[0], ComponentSpec)):
                params[key] = [v.record() for v in value] if isinstance(value, list) else value.record()
            else:
                params[key] = _plain(value)
        return {
            "name": self.entry.name, **{k: _plain(v) for k, v in self.keys.items()}, "params": params,
            "plugin": self.entry.plugin, "distribution": self.entry.distribution, "version": self.entry.version,
        }


#: What a component record (:meth:`ComponentSpec.record`) says beside the component's name, keys
#: and parameters: where it came from.
PROVENANCE = ("plugin", "distribution", "version")


def table_of(record: dict[str, Any]) -> dict[str, Any]:
    """A component record read back as a recipe table: its name, keys and parameters side by
    side, a nested record as a nested table, the provenance left out. What ``ebmkit.create``
    and a recipe take; the one reader of the records :meth:`ComponentSpec.record` writes."""
    table = {k: v for k, v in record.items() if k not in ("params", *PROVENANCE)}
    for key, value in record["params"].items():
        if isinstance(value, dict) and "params" in value:
            value = table_of(value)
        elif isinstance(value, list) and value and isinstance(value[0], dict) and "params" in value[0]:
            value = [table_of(v) for v in value]
        table[key] = value
    return table


#: id of a built component -> (a weak reference to it, what built it), for messages about it.
_built: dict[int, tuple[weakref.ref, str]] = {}


def _remember(built: Any, description: str) -> None:
    try:
        ref = weakref.ref(built)
    except TypeError:  # not weakly referable: messages fall back to its type
        return
    _built[id(built)] = (ref, description)
    weakref.finalize(built, _built.pop, id(built), None)


def describe(component: Any) -> str:
    """What a built component is, for a message: ``transition 'mine' (plugin 'my_plugin' (my-plugin
    0.1), at sampler.transitions[0])`` when a registry built it, else its type."""
    found = _built.get(id(component))
    if found is not None and found[0]() is component:
        return found[1]
    return f"{type(component).__module__}.{type(component).__qualname__}"


def _plain(value: Any) -> Any:
    """A JSON- and TOML-friendly copy of a parameter value (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Registrar:
    """The ``register`` callable a registration hook receives, for one kind and one plugin.

    ``register(name, factory, *, params=None, summary=None, aliases=(), requires=(), provides=())``

    - ``name``: the snake_case name recipes, :func:`ebmkit.create` and ``ebmkit.sample`` use.
    - ``factory``: builds the component from its parameters (keyword arguments) plus the
      context keywords of its kind that its signature accepts.
    - ``params``: an attrs class describing the parameters (types, defaults, validators).
      Omitted: the factory itself when it is an attrs class, otherwise a spec derived from
      its annotated signature, whose ``typing.Annotated`` metadata may hold validators
      (``lr: Annotated[float, attrs.validators.gt(0)] = 1e-3``). Parameters whose names start
      with ``_`` are private.
    - ``summary``: one line for ``ebmkit list``; by default the docstring's first line.
    - ``aliases``: other names for the same component.
    - ``requires`` / ``provides``: capabilities needed from, and offered to, the other
      components of a recipe (see :class:`Entry`).

    What a plugin registers is kept only if all its registration hooks finish without error.
    """

    def __init__(self, kind: Kind, plugin: str, distribution: str, version: str):
        self.kind, self.plugin, self.distribution, self.version = kind, plugin, distribution, version
        self.entries: list[Entry] = []

    def __call__(
        self, name: str, factory: Callable[..., Any], *, params: type | None = None, summary: str | None = None,
        aliases: tuple[str, ...] = (), requires: tuple[str, ...] = (), provides: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise EbmkitError(f"plugin {self.plugin!r} registered a {self.kind.singular} without a name")
        if not callable(factory):
            raise EbmkitError(f"plugin {self.plugin!r} registered {self.kind.singular} {name!r} with a factory that is not callable")
        doc = inspect.getdoc(factory) or ""
        self.entries.append(Entry(
            kind=self.kind, name=name, factory=factory, params=params_.spec_of(factory, params, self.kind.context),
            plugin=self.plugin, distribution=self.distribution, version=self.version,
            summary=summary or (doc.splitlines()[0] if doc else ""), aliases=tuple(aliases),
            requires=tuple(requires), provides=tuple(provides),
        ))


class Registry(Mapping[str, Entry]):
    """The components of one kind, by name (aliases resolve to their entry)."""

    def __init__(self, kind: Kind, failed_plugins: Mapping[str, str] | None = None):
        self.kind = kind
        self.failed_plugins = failed_plugins if failed_plugins is not None else {}
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def conflict(self, entry: Entry) -> Entry | None:
        """The registered entry that one of ``entry``'s names would clash with, if any."""
        for name in (entry.name, *entry.aliases):
            existing = self._entries.get(self._aliases.get(name, name))
            if existing is not None:
                return existing
        return None

    def add(self, entry: Entry) -> None:
        self._entries[entry.name] = entry
        self._aliases.update({alias: entry.name for alias in entry.aliases})

    def __getitem__(self, name: str) -> Entry:
        entry = self._entries.get(self._aliases.get(name, name))
        if entry is None:
            raise UnknownComponentError(self.kind.name, name, self.names(), failed_plugins=sorted(self.failed_plugins))
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


def check_keys(table: dict[str, Any], keys: Mapping[str, Key], where: str) -> tuple[dict[str, Any], list[RecipeProblem]]:
    """Take each of ``keys`` out of ``table`` (its default when absent), checked against its
    :class:`Key`: the keys a component's table holds for the run, and the ``[run]`` settings
    plugins declare. Returns the values and every problem, at ``<where>.<key>``."""
    values: dict[str, Any] = {}
    problems: list[RecipeProblem] = []
    for key, spec in keys.items():
        value = table.pop(key, spec.default)
        try:
            values[key] = params_.coerce(value, spec.type)
        except (TypeError, ValueError) as exc:
            problems.append(RecipeProblem(f"{where}.{key}", str(exc)))
            continue
        if spec.minimum is not None and values[key] < spec.minimum:
            problems.append(RecipeProblem(f"{where}.{key}", f"must be at least {spec.minimum}, got {values[key]}"))
    return values, problems


def _run_setting_problems(declared: list[Any], taken: Mapping[str, tuple[Key, str]]) -> list[str]:
    """What is wrong with the ``[run]`` settings a plugin declares: not a table of Keys, or a name
    another plugin declares."""
    problems = []
    for settings in declared:
        if not isinstance(settings, dict) or not all(isinstance(n, str) and isinstance(k, Key) for n, k in settings.items()):
            problems.append(f"ebmkit_run_settings must return {{name: ebmkit.Key}}, got {settings!r}")
            continue
        problems += [f"[run].{name} is declared by plugin {taken[name][1]!r} too" for name in settings if name in taken]
    return problems


class Registries(Mapping[str, Registry]):
    """All registries, filled from a plugin manager.

    Each plugin's registration hooks are called through pluggy for that plugin alone, so
    every entry records its plugin and distribution. Registration is all-or-nothing per
    plugin: a plugin whose hook raises, or that registers a name another plugin already
    has, is left out whole and reported in ``failures``; the others load.
    """

    def __init__(self, pm: EbmkitPluginManager):
        self.pm = pm
        self.failures: dict[str, str] = {info.name: info.error or "" for info in pm.failures}
        self._kinds = {kind.name: Registry(kind, self.failures) for kind in KINDS}
        #: ``[run]`` settings the plugins declare (``ebmkit_run_settings``): name -> (Key, plugin)
        self.run_settings: dict[str, tuple[Key, str]] = {}
        for plugin_name, plugin in pm.list_name_plugin():
            if plugin is not None:
                self._collect(plugin_name, plugin)

    def _collect(self, plugin_name: str, plugin: object) -> None:
        distribution, version = self.pm.distribution_of(plugin_name)
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        staged: list[Entry] = []
        try:
            for kind in KINDS:
                registrar = Registrar(kind, plugin_name, distribution, version)
                self.pm.subset_hook_caller(kind.hook, remove_plugins=others)(register=registrar)
                staged += registrar.entries
            settings = self.pm.subset_hook_caller("ebmkit_run_settings", remove_plugins=others)()
        except Exception as exc:  # a broken plugin must not take the others down
            self.failures[plugin_name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return
        problems = _run_setting_problems(settings, self.run_settings)
        for index, entry in enumerate(staged):
            clash = self._kinds[entry.kind.name].conflict(entry) or next(
                (e for e in staged[:index] if e.kind is entry.kind and {e.name, *e.aliases} & {entry.name, *entry.aliases}), None
            )
            if clash is not None:
                problems.append(f"{entry.label} conflicts with {clash.label} from {clash.source}")
        if problems:
            self.failures[plugin_name] = (
                "; ".join(problems) + f"; ebmkit left plugin {plugin_name!r} out (uninstall one of them, or block one "
                "with EBMKIT_DISABLED_PLUGINS)"
            )
            return
        for entry in staged:
            self._kinds[entry.kind.name].add(entry)
        for declared in settings:
            self.run_settings.update({name: (key, plugin_name) for name, key in (declared or {}).items()})

    def __getitem__(self, kind: str) -> Registry:
        return self._kinds[kind_named(kind).name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def get(self, kind: str, name: str) -> Entry:  # type: ignore[override]
        """The entry ``name`` of ``kind``; raises :class:`UnknownComponentError` with help."""
        return self[kind][name]

    def providers(self, capability: str) -> list[Entry]:
        """Every registered entry that provides ``capability``."""
        return [e for registry in self._kinds.values() for e in registry.values() if capability in e.provides]

    def resolver(self) -> params_.Resolver:
        """Checks a nested component table: ``resolve(kind, table, where, keys)``."""

        def resolve(kind: str, table: Any, where: str, keys: dict[str, Key]) -> tuple[ComponentSpec | None, list[RecipeProblem]]:
            return self.check_table(self[kind].kind, table, where, keys)

        return resolve

    def check_table(
        self, kind: Kind, table: Any, where: str, keys: Mapping[str, Key] | None = None
    ) -> tuple[ComponentSpec | None, list[RecipeProblem]]:
        """Check one component table (``{name = ..., **keys, **params}``) into a spec."""
        if not isinstance(table, dict):
            return None, [RecipeProblem(where, f"expected a table with a 'name' key, got {table!r}")]
        table = dict(table)
        name = table.pop("name", None)
        registry = self[kind.name]
        if not isinstance(name, str):
            problem = f"missing the name of a {kind.singular}" if name is None else f"expected the name of a {kind.singular} (a string), got {name!r}"
            return None, [RecipeProblem(f"{where}.name", f"{problem}; available: {', '.join(registry.names())}")]
        try:
            entry = registry[name]
        except UnknownComponentError as exc:
            return None, [RecipeProblem(f"{where}.name", str(exc))]
        found_keys, problems = check_keys(table, keys if keys is not None else kind.keys, where)
        values, found = entry.check(table, where, self.resolver())
        problems += found
        if problems:
            return None, problems
        return ComponentSpec(entry, values or {}, where, found_keys), []

    def spec(self, kind: str, name: str, params: Mapping[str, Any] | None = None) -> ComponentSpec:
        """Check ``params`` for component ``name`` of ``kind`` into a spec; raises with every problem."""
        kind_ = kind_named(kind)
        spec, problems = self.check_table(kind_, {"name": name, **(params or {})}, f"{kind_.singular} {name!r}", keys={})
        if problems:
            raise RecipeError(f"ebmkit.create({kind_.name!r}, {name!r})", problems)
        return spec

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Check, then build: the one construction path (see :func:`ebmkit.create`)."""
        kind_ = kind_named(kind)
        context = {key: kwargs.pop(key) for key in list(kwargs) if key in kind_.context}
        spec = self.spec(kind_.name, name, kwargs)
        try:
            return spec.build(**context)
        except ComponentBuildError as exc:
            raise RecipeError(f"ebmkit.create({kind_.name!r}, {name!r})", [RecipeProblem(exc.where, exc.message)]) from None
