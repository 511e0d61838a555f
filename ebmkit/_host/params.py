"""Parameter specs: the typed, attrs-described parameters of each component.

A component's spec is an attrs class. Recipe values are checked against its field types
(TOML integers are accepted where a float is expected, arrays where a tuple or list is;
NaN is never accepted, infinity only where a field's metadata allows it), then each
field's validators run. Every problem is reported, with the TOML path of its key, not
just the first.

A spec derived from a factory's signature takes validators from ``typing.Annotated``:
``lr: Annotated[float, attrs.validators.gt(0)] = 1e-3``.
"""

from __future__ import annotations

import datetime
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from ebmkit._host.errors import RecipeProblem, did_you_mean_hint, singular

if typing.TYPE_CHECKING:
    from ebmkit._host.kinds import Key


#: Metadata key of a parameter whose value is itself a component (a nested table with a name).
COMPONENT_KEY = "ebmkit_component"
#: Metadata key of a float parameter (or array of them) that may be ``inf`` or ``-inf``, such as
#: clamp bounds (``clamp = [0, inf]``). Without it a recipe's infinities are refused; NaN always is.
INFINITE_OK = "ebmkit_infinite_ok"
#: What a TOML value can be besides a table: never a built component.
TOML_VALUES = (str, int, float, bool, list, tuple, datetime.date, datetime.time)


@attrs.frozen
class Slot:
    """A parameter that holds nested components of ``kind``: one table, or an array of tables
    (``many``), each of which may carry ``keys`` that the owner reads beside the component."""

    kind: str
    many: bool = False
    keys: dict[str, Key] = attrs.field(factory=dict)


@attrs.frozen
class Keyed:
    """A nested component, built, with the keys its owner reads beside it (a chain's ``every``)."""

    component: Any
    keys: dict[str, Any]


def component(kind: str, *, default: Any = None, many: bool = False, keys: dict[str, Key] | None = None, **field: Any) -> Any:
    """An attrs field whose recipe value is a nested component table of ``kind`` (or, with
    ``many``, an array of them).

    In a recipe it is written as a sub-table with its own ``name``, e.g. ``[buffer.on_draw]`` /
    ``name = "augment"``, or ``[[sampler.transitions]]``; it is checked like any component and
    built with its kind's context, and the built component is passed to the factory. With
    ``keys``, each table may also hold those keys; the factory then receives :class:`Keyed`
    values. Other keyword arguments (``converter``, ``validator``) go to ``attrs.field``.
    """
    if many and default is None:
        default = ()
    return attrs.field(default=default, metadata={COMPONENT_KEY: Slot(kind, many, dict(keys or {}))}, **field)


def low_below_high(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator of an optional ``(low, high)`` pair, such as clamp bounds: low < high."""
    if value is not None and not value[0] < value[1]:
        raise ValueError(f"{attribute.name} must be (low, high) with low < high, got {value}")


def slot_of(field: attrs.Attribute) -> Slot | None:
    return field.metadata.get(COMPONENT_KEY)


Resolver = Callable[[str, Any, str, dict[str, Any]], tuple[Any, list[RecipeProblem]]]


def spec_of(factory: Callable[..., Any], params: type | None, context_names: Iterable[str]) -> type:
    """The attrs class that describes ``factory``'s user-facing parameters."""
    if params is not None:
        if not attrs.has(params):
            raise TypeError(f"params= must be an attrs class, got {params!r}")
        return params
    context = set(context_names)
    if attrs.has(factory):
        try:
            attrs.resolve_types(factory)  # string annotations -> types, so the derived spec can check them
        except Exception:  # a plugin's annotations may not resolve; its values are then not type-checked
            pass
        fields = {
            f.name: attrs.field(
                default=f.default, validator=f.validator, type=f.type, metadata=f.metadata,
                # A nested component is checked as a spec here; its converter expects built ones.
                converter=None if slot_of(f) else f.converter,
            )
            for f in attrs.fields(factory)
            if f.init and f.name not in context
        }
        # A pure copy of the fields and validators: checking parameters must never run the
        # component's own code (an __attrs_post_init__ may load a dataset).
        return attrs.make_class(f"{factory.__name__}Params", fields, kw_only=True)
    signature = inspect.signature(factory, eval_str=True)
    fields = {}
    for p in signature.parameters.values():
        private = p.name.startswith("_") or p.name == "self"
        if private or p.name in context or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = attrs.NOTHING if p.default is p.empty else p.default
        annotation = Any if p.annotation is p.empty else p.annotation
        validators = [m for m in getattr(annotation, "__metadata__", ()) if callable(m)]
        fields[p.name] = attrs.field(default=default, type=annotation, validator=validators or None)
    name = getattr(factory, "__name__", "Component")
    return attrs.make_class(f"{name}Params", fields, kw_only=True)


def field_types(spec: type) -> dict[str, Any]:
    """Resolved field types of an attrs spec (string annotations evaluated)."""
    try:
        hints = typing.get_type_hints(spec)
    except Exception:  # a plugin's annotations may not resolve; then nothing is type-checked
        hints = {}
    return {f.name: hints.get(f.name, f.type if not isinstance(f.type, str) else Any) for f in attrs.fields(spec)}


def type_name(tp: Any) -> str:
    if tp is Any or tp is None:
        return "any value"
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "")


def _non_finite(value: Any, infinite_ok: bool) -> float | None:
    """The first NaN (or, unless ``infinite_ok``, infinity) in ``value`` or the arrays and tables in it."""
    if isinstance(value, float):
        return value if math.isnan(value) or (math.isinf(value) and not infinite_ok) else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    return next((bad for item in items if (bad := _non_finite(item, infinite_ok)) is not None), None)


def _require_finite(value: Any, infinite_ok: bool = False) -> None:
    """Raise ValueError if ``value`` is or holds a NaN, or an infinity where none is allowed."""
    bad = _non_finite(value, infinite_ok)
    if bad is None:
        return
    shown = repr(bad) if bad is value else f"{bad!r} in {value!r}"
    if math.isnan(bad):
        raise ValueError(f"expected a number, got {shown}: NaN is never a valid value")
    raise ValueError(f"expected a finite number, got {shown}")


def coerce(value: Any, tp: Any, *, infinite_ok: bool = False) -> Any:
    """Return ``value`` converted to ``tp``; raise TypeError saying what was expected, or
    ValueError for a NaN (or an infinity unless ``infinite_ok``) anywhere in it."""
    _require_finite(value, infinite_ok)
    if tp is Any or tp is None or isinstance(tp, str | typing.TypeVar):
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if value in args:
            return value
        raise TypeError(f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return coerce(value, option, infinite_ok=infinite_ok)
            except TypeError:
                pass
        raise TypeError(f"expected {type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin in (tuple, list, typing.Sequence) or tp in (tuple, list):
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected an array ({type_name(tp)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TypeError(f"expected an array of {len(args)} values, got {len(value)}")
            items = [coerce(v, a, infinite_ok=infinite_ok) for v, a in zip(value, args, strict=True)]
        else:
            inner = args[0] if args else Any
            items = [coerce(v, inner, infinite_ok=infinite_ok) for v in value]
        return list(items) if (origin is list or tp is list) else tuple(items)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise TypeError(f"expected {type_name(tp)}, got {value!r} ({type(value).__name__})")


def check(
    spec: type, values: Mapping[str, Any], where: str, owner: str, resolve: Resolver | None = None
) -> tuple[dict[str, Any] | None, list[RecipeProblem]]:
    """Check ``values`` against ``spec``.

    :param where: the TOML path of the table, for messages.
    :param owner: what the parameters belong to, e.g. ``transition 'langevin'``.
    :param resolve: checks a nested component table: ``resolve(kind, table, where, keys)``
        returns its checked spec (something with ``build()``) and the problems found. A
        nested value that is neither a table nor a TOML value (a component built in Python)
        is taken as it is.
    :return: every parameter's value, defaults included (None if any problem was found), and
        the problems.
    """
    problems: list[RecipeProblem] = []
    types_ = field_types(spec)
    fields = {f.name: f for f in attrs.fields(spec) if f.init}
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            message = f"unknown parameter {key!r} for {owner}"
            message += did_you_mean_hint(key, fields)
            message += f"\n parameters: {', '.join(fields) or '(none)'}"
            problems.append(RecipeProblem(f"{where}.{key}", message))
            continue
        slot = slot_of(fields[key])
        if slot is not None:
            converted[key], found = _check_nested(slot, value, f"{where}.{key}", resolve)
            problems += found
            continue
        try:
            converted[key] = coerce(value, types_.get(key, Any), infinite_ok=fields[key].metadata.get(INFINITE_OK, False))
        except (TypeError, ValueError) as exc:
            problems.append(RecipeProblem(f"{where}.{key}", f"{exc} for {owner}"))
    for name, f in fields.items():
        if name not in values and f.default is attrs.NOTHING:
            problems.append(
                RecipeProblem(f"{where}.{name}", f"missing required parameter {name!r} ({type_name(types_.get(name))}) for {owner}")
            )
    if problems:
        return None, problems
    try:
        # Validators run one by one below, so that each problem names its key and all are reported.
        with attrs.validators.disabled():
            instance = spec(**converted)  # nested components go in as their checked specs: their own checks already ran
    except (TypeError, ValueError) as exc:
        return None, [RecipeProblem(where, f"invalid parameters for {owner}: {exc}")]
    for f in attrs.fields(spec):
        if f.validator is None:
            continue
        try:
            f.validator(instance, f, getattr(instance, f.name))
        except (TypeError, ValueError) as exc:
            problems.append(RecipeProblem(f"{where}.{f.name}", f"invalid value for {owner}: {exc}"))
    if problems:
        return None, problems
    return {name: getattr(instance, name) for name in fields}, []


def _check_nested(slot: Slot, value: Any, where: str, resolve: Resolver | None) -> tuple[Any, list[RecipeProblem]]:
    if resolve is None:
        return None, [RecipeProblem(where, f"a nested {singular(slot.kind)} is only supported in a recipe")]
    table = f"{singular(slot.kind)} table with a 'name' key"
    if not slot.many:
        if isinstance(value, dict):
            return resolve(slot.kind, value, where, slot.keys)
        if isinstance(value, TOML_VALUES):
            return None, [RecipeProblem(where, f"expected a {table}, got {value!r}")]
        return value, []
    if not isinstance(value, list | tuple):
        return None, [RecipeProblem(where, f"expected an array of {singular(slot.kind)} tables, got {value!r}")]
    items, problems = [], []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            checked, found = resolve(slot.kind, item, f"{where}[{index}]", slot.keys)
            items.append(checked)
            problems += found
        elif isinstance(item, TOML_VALUES):
            problems.append(RecipeProblem(f"{where}[{index}]", f"expected a {table}, got {item!r}"))
        else:
            items.append(item)
    return items, problems


def describe(spec: type) -> list[tuple[str, str, str]]:
    """(name, type, default) for each parameter, for listings and docs."""
    types_ = field_types(spec)
    rows = []
    for f in attrs.fields(spec):
        if not f.init:
            continue
        if f.default is attrs.NOTHING:
            default = "(required)"
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            default = repr(f.default.factory())
        else:
            default = repr(f.default)
        slot = slot_of(f)
        if slot is None:
            shown = type_name(types_.get(f.name))
        else:
            shown = f"{'an array of' if slot.many else 'a'} {singular(slot.kind)} table{'s' if slot.many else ''}"
        rows.append((f.name, shown, default))
    return rows
