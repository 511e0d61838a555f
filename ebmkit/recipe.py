"""TOML recipes: loading, overrides and validation.

A recipe names components by registered name in tables such as ``[energy]`` or
``[[losses]]``; every other key of such a table is a parameter of that component,
except a few keys the runner owns (``weight`` for losses, ``every`` for transitions and
evaluators). ``[run]`` and ``[train]`` configure the runner itself. See docs/recipes.md.

Validation resolves every name and checks every parameter against the component's
attrs spec before any work starts, and reports all problems at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ebmkit import params as params_
from ebmkit.errors import EbmkitError, RecipeError, RecipeProblem, UnknownComponentError, did_you_mean, singular
from ebmkit.registry import ComponentSpec, Registries, default_registries


@attrs.frozen(kw_only=True)
class RunSettings:
    """``[run]``: settings of the run as a whole."""

    seed: int = 0
    device: str = "cpu"
    name: str = ""


@attrs.frozen(kw_only=True)
class TrainSettings:
    """``[train]``: the training loop."""

    steps: int = attrs.field(validator=attrs.validators.ge(0))
    batch_size: int = attrs.field(default=128, validator=attrs.validators.gt(0))
    log_every: int = attrs.field(default=50, validator=attrs.validators.gt(0))
    checkpoint_every: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    grad_clip: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    ema: float | None = attrs.field(default=None, validator=attrs.validators.optional([attrs.validators.ge(0), attrs.validators.lt(1)]))
    eval_at_start: bool = True
    energy_bound: float | None = None
    #: Stop after this many seconds of training (evaluations and checkpoints not counted),
    #: even if fewer than ``steps`` updates were made: for equal-wall-clock comparisons.
    time_limit_s: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))


#: Component tables: the table name, the registry kind, whether it is an array of
#: tables, whether it is required, and the keys the runner owns with their types and defaults.
@attrs.frozen
class TableKind:
    table: str
    kind: str
    many: bool
    required: bool
    core_keys: dict[str, tuple[type, Any, int]] = attrs.field(factory=dict)  # type, default, minimum


COMPONENT_TABLES: tuple[TableKind, ...] = (
    TableKind("data", "datasets", many=False, required=True),
    TableKind("energy", "energies", many=False, required=True),
    TableKind("sampler", "samplers", many=False, required=True),
    TableKind("transitions", "transitions", many=True, required=False, core_keys={"every": (int, 1, 1)}),
    TableKind("buffer", "buffers", many=False, required=False),
    TableKind("losses", "losses", many=True, required=True, core_keys={"weight": (float, 1.0, None)}),
    TableKind("optim", "optimizers", many=False, required=True),
    TableKind("evaluators", "evaluators", many=True, required=False, core_keys={"every": (int, 0, 0)}),
)
SETTINGS_TABLES: dict[str, type] = {"run": RunSettings, "train": TrainSettings}
ALL_TABLES = [*SETTINGS_TABLES, *(t.table for t in COMPONENT_TABLES)]


@attrs.frozen
class Recipe:
    """A validated recipe: the settings and the resolved components."""

    source: str
    data: dict[str, Any]
    run: RunSettings
    train: TrainSettings
    components: dict[str, list[ComponentSpec]]

    def one(self, table: str) -> ComponentSpec | None:
        specs = self.components.get(table, [])
        return specs[0] if specs else None

    def many(self, table: str) -> list[ComponentSpec]:
        return list(self.components.get(table, []))


# -- overrides ----------------------------------------------------------------------------
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``key.path=value``; the value is read as TOML, or kept as a plain string."""
    if "=" not in text:
        raise EbmkitError(f"--set expects key.path=value, got {text!r}")
    key, raw = text.split("=", 1)
    path: list[str | int] = []
    for part in key.strip().split("."):
        for name, index in _SEGMENT.findall(part):
            path.append(int(index) if index else (int(name) if name.isdigit() else name))
    if not path:
        raise EbmkitError(f"--set expects key.path=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> list[RecipeProblem]:
    problems = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except EbmkitError as exc:
            problems.append(RecipeProblem("--set", str(exc)))
            continue
        node: Any = data
        for i, key in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    size = len(node) if isinstance(node, list) else 0
                    problems.append(RecipeProblem(f"--set {text}", f"index {key} is out of range ({size} entries)"))
                    break
                node = node[key]
            else:
                if not isinstance(node, dict):
                    problems.append(RecipeProblem(f"--set {text}", f"{key!r} is not inside a table"))
                    break
                node = node.setdefault(key, [] if isinstance(nxt, int) else {})
        else:
            last = path[-1]
            if isinstance(last, int):
                if isinstance(node, list) and last < len(node):
                    node[last] = value
                else:
                    problems.append(RecipeProblem(f"--set {text}", f"index {last} is out of range"))
            elif isinstance(node, dict):
                node[last] = value
            else:
                problems.append(RecipeProblem(f"--set {text}", f"cannot set {last!r} on an array; give an index"))
    return problems


# -- validation ---------------------------------------------------------------------------
def _check_settings(cls: type, table: Any, where: str) -> tuple[Any, list[RecipeProblem]]:
    if not isinstance(table, dict):
        return None, [RecipeProblem(where, f"expected a table, got {table!r}")]
    values, problems = params_.check(cls, table, where, f"[{where}]")
    return (cls(**values) if values is not None else None), problems


def nested_resolver(registries: Registries) -> params_.Resolver:
    """Checks a nested component table (e.g. ``[buffer.on_draw]``) as a recipe does:
    ``resolve(kind, table, where)`` returns its ComponentSpec and the problems found."""

    def resolve(kind: str, table: Any, where: str) -> tuple[ComponentSpec | None, list[RecipeProblem]]:
        return _check_component(TableKind(where, kind, False, True), table, where, registries)

    return resolve


def _check_component(
    kind: TableKind, table: Any, where: str, registries: Registries
) -> tuple[ComponentSpec | None, list[RecipeProblem]]:
    if not isinstance(table, dict):
        return None, [RecipeProblem(where, f"expected a table with a 'name' key, got {table!r}")]
    table = dict(table)
    name = table.pop("name", None)
    if not isinstance(name, str):
        available = ", ".join(registries[kind.kind].names())
        return None, [RecipeProblem(f"{where}.name", f"missing the name of a {singular(kind.kind)}; available: {available}")]
    try:
        entry = registries.get(kind.kind, name)
    except UnknownComponentError as exc:
        return None, [RecipeProblem(f"{where}.name", str(exc))]
    problems: list[RecipeProblem] = []
    core: dict[str, Any] = {}
    for key, (tp, default, minimum) in kind.core_keys.items():
        value = table.pop(key, default)
        try:
            core[key] = params_.coerce(value, tp)
        except TypeError as exc:
            problems.append(RecipeProblem(f"{where}.{key}", str(exc)))
            continue
        if minimum is not None and core[key] < minimum:
            problems.append(RecipeProblem(f"{where}.{key}", f"must be at least {minimum}, got {core[key]}"))
    values, param_problems = entry.check(table, where, nested_resolver(registries))
    problems += param_problems
    if problems:
        return None, problems
    return ComponentSpec(entry, values or {}, where, core), []


def validate(data: Mapping[str, Any], source: str = "<recipe>", registries: Registries | None = None) -> Recipe:
    """Check a recipe's data; raise :class:`RecipeError` listing every problem."""
    registries = registries or default_registries()
    problems: list[RecipeProblem] = []
    for key in data:
        if key not in ALL_TABLES:
            message = f"unknown table [{key}]"
            suggestion = did_you_mean(key, ALL_TABLES)
            if suggestion:
                message += f" - did you mean [{suggestion}]?"
            problems.append(RecipeProblem(f"[{key}]", message + f"\n tables: {', '.join(ALL_TABLES)}"))

    settings: dict[str, Any] = {}
    for table, cls in SETTINGS_TABLES.items():
        raw = data.get(table, {})
        if table == "train" and "train" not in data:
            problems.append(RecipeProblem("[train]", "missing table [train] (at least 'steps')"))
            continue
        settings[table], found = _check_settings(cls, raw, table)
        problems += found

    components: dict[str, list[ComponentSpec]] = {}
    for kind in COMPONENT_TABLES:
        raw = data.get(kind.table)
        if raw is None:
            if kind.required:
                problems.append(RecipeProblem(f"[{kind.table}]", f"missing {'[[' if kind.many else '['}{kind.table}{']]' if kind.many else ']'}"))
            continue
        if kind.many:
            if not isinstance(raw, list):
                problems.append(RecipeProblem(kind.table, f"expected an array of tables [[{kind.table}]]"))
                continue
            entries = [(item, f"{kind.table}[{i}]") for i, item in enumerate(raw)]
        else:
            if isinstance(raw, list):
                problems.append(RecipeProblem(kind.table, f"expected one table [{kind.table}], got an array"))
                continue
            entries = [(raw, kind.table)]
        specs = []
        for item, where in entries:
            spec, found = _check_component(kind, item, where, registries)
            problems += found
            if spec is not None:
                specs.append(spec)
        components[kind.table] = specs

    if problems:
        raise RecipeError(source, problems)
    return Recipe(source, dict(data), settings["run"], settings["train"], components)


def load(path: str | Path, overrides: Sequence[str] = (), registries: Registries | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EbmkitError(f"recipe not found: {path}") from None
    except OSError as exc:
        raise EbmkitError(f"cannot read recipe {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(str(path), [RecipeProblem("", f"not valid TOML: {exc}")]) from None
    problems = apply_overrides(data, overrides)
    try:
        recipe = validate(data, str(path), registries)
    except RecipeError as exc:
        raise RecipeError(str(path), problems + exc.problems) from None
    if problems:
        raise RecipeError(str(path), problems)
    return recipe
