"""TOML recipes: loading, overrides and validation.

A recipe names components by registered name in tables such as ``[energy]`` or
``[[losses]]``; which tables exist, and which are arrays or required, comes from the table of
kinds (:mod:`ebmkit._host.kinds`). Every other key of such a table is a parameter of that component,
except the few keys its owner reads (``weight`` for losses, ``every`` for evaluators). A
parameter may itself be a component, written as a nested table (``[[sampler.transitions]]``).
``[run]`` and ``[train]`` configure the run itself. See docs/recipes.md.

Validation resolves every name, checks every parameter against the component's attrs spec,
and checks that what each component ``requires`` some component ``provides``, and reports
all problems at once. :mod:`ebmkit._recipes.build` then builds the components, which is the rest of
validation.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from ebmkit._host import params as params_
from ebmkit._host.errors import EbmkitError, RecipeError, RecipeProblem, did_you_mean_hint
from ebmkit._host.kinds import KINDS, Kind
from ebmkit._host.registry import ComponentSpec, Registries, check_keys, table_of
from ebmkit._host.installed import default_registries


#: The largest ``[run].seed``: the ranks' and rollbacks' strides added to it stay below 2**63.
MAX_SEED = 2**62


@attrs.frozen(kw_only=True)
class RunSettings:
    """``[run]``: settings of the run as a whole."""

    #: The run's random seed; a data-parallel rank and a rollback add their own strides to it.
    seed: int = attrs.field(default=0)
    #: A torch device string ("cpu", "cuda", "cuda:1", "mps").
    device: str = attrs.field(default="cpu")
    #: Names the default run folder (runs/NAME-DATE): a plain name, not a path.
    name: str = attrs.field(default="")
    #: How long a collective operation of a data-parallel run waits for the other ranks: a rank
    #: that died, raised or hangs stops the others after this at the latest. Rank 0's
    #: evaluations and checkpoints between two updates must fit in it.
    collective_timeout_s: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    #: Intra-op CPU threads (torch.set_num_threads). Unset: 1 for energies under
    #: ``SMALL_ENERGY_PARAMETERS`` parameters, where a thread barrier costs more than it saves,
    #: else torch's default. The run says what it chose.
    threads: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
    #: The number of data-parallel ranks the recipe was written for (the reference's GPUs);
    #: a run with another number is warned: its effective batch and its buffers differ.
    world_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
    #: Fast paths (docs/performance.md), each off by default. ``torch.compile`` the energy
    #: (passes that are differentiated twice, such as improved CD's KL step, stay eager).
    compile: bool = False
    #: Capture the compiled energy's passes in CUDA graphs (``torch.compile`` mode
    #: "reduce-overhead"); CUDA only, ignored with a note elsewhere.
    cuda_graphs: bool = False
    #: The energy's weights and 4-D inputs in the channels-last memory format.
    channels_last: bool = False
    #: Run the energy's forward under ``torch.autocast`` in this dtype ("bf16"); the energy
    #: itself, and every loss and gradient reduction of it, stays float32.
    autocast: Literal["bf16"] | None = None

    @seed.validator
    def _seed_in_range(self, attribute: attrs.Attribute, value: int) -> None:
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"a seed is an integer from 0 to 2**62, not {value}")

    @name.validator
    def _plain_name(self, attribute: attrs.Attribute, value: str) -> None:
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"a run name is a plain name, not a path: {value!r} (use --out for the folder)")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"a run name names a folder and cannot hold control characters: {value!r}")

    @device.validator
    def _torch_device(self, attribute: attrs.Attribute, value: str) -> None:
        import torch  # (only when a recipe is checked: listing commands import no torch)

        try:
            torch.device(value)
        except (RuntimeError, ValueError, TypeError):
            raise ValueError(f"{value!r} is not a device torch knows; write one as torch does, e.g. \"cpu\", \"cuda\", \"cuda:1\", \"mps\"") from None


@attrs.frozen(kw_only=True)
class DivergencePolicy:
    """``[train.on_divergence]``: what happens when training diverges (a non-finite loss, energy,
    gradient or weight, or ``[train].energy_bound`` exceeded). See docs/resume.md."""

    #: ``"stop"``: stop the run with a message. ``"rollback"``: restore the latest checkpoint
    #: and continue from it, with the learning rate scaled by ``lr_scale``.
    action: Literal["stop", "rollback"] = "stop"
    lr_scale: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0), attrs.validators.le(1)])
    #: Draw new random numbers after a rollback, so the retry does not repeat the same chains.
    reseed: bool = True
    #: Rollbacks allowed over the whole run; one more divergence stops it.
    max_retries: int = attrs.field(default=3, validator=[attrs.validators.ge(0), attrs.validators.le(1000)])


@attrs.frozen(kw_only=True)
class TrainSettings:
    """``[train]``: the training loop."""

    steps: int = attrs.field(validator=attrs.validators.ge(0))
    batch_size: int = attrs.field(default=128, validator=attrs.validators.gt(0))
    log_every: int = attrs.field(default=50, validator=attrs.validators.gt(0))
    checkpoint_every: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    #: Also write a checkpoint when this many minutes passed since the last one (unset: never),
    #: so that a pre-empted or failed run loses minutes. Such a checkpoint is replaced by the
    #: next checkpoint written: it never fills the disk.
    checkpoint_every_minutes: float | None = attrs.field(default=30.0, validator=attrs.validators.optional(attrs.validators.gt(0)))
    grad_clip: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    ema: float | None = attrs.field(default=None, validator=attrs.validators.optional([attrs.validators.ge(0), attrs.validators.lt(1)]))
    eval_at_start: bool = True
    #: Diverged when the mean energy of the data batch exceeds this in absolute value.
    energy_bound: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    #: Keep only the latest N checkpoints (unset: keep all).
    keep_checkpoints: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
    on_divergence: DivergencePolicy = attrs.field(factory=DivergencePolicy)
    #: Stop after this many seconds of training (evaluations and checkpoints not counted),
    #: even if fewer than ``steps`` updates were made: for equal-wall-clock comparisons.
    time_limit_s: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    #: When an update's new samples are offered to the buffer: after the optimizer step, or
    #: ``before_losses`` as the Improved-CD reference does (the recipes that reproduce it say
    #: so): a loss term that reads the buffer, the entropy term's reference set, then switches
    #: on one update earlier and may see this batch's own samples. Their distance is not zero
    #: only when the buffer's draws are not exact copies (``uint8`` storage dequantises them,
    #: ``on_draw`` augments them); with exact copies the entropy term is infinite.
    #: Start from the weights of another run (its folder, for its latest checkpoint, or a
    #: checkpoint folder): the energy, the EMA and the optimizer's moments, with this recipe's
    #: settings. A second training phase, e.g. Energy Matching's contrastive phase after its
    #: flow-matching warm-up. Read once, when the run starts at step 0; a resume reads its own
    #: checkpoints. The source is recorded in every checkpoint (``ebmkit.load(...).history``).
    init_from: str | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.min_len(1)))
    push_negatives: Literal["after_step", "before_losses"] = attrs.field(
        default="after_step", validator=attrs.validators.in_(("after_step", "before_losses"))
    )


SETTINGS_TABLES: dict[str, type] = {"run": RunSettings, "train": TrainSettings}
#: The component tables of a recipe, from the table of kinds.
COMPONENT_KINDS: tuple[Kind, ...] = tuple(kind for kind in KINDS if kind.table is not None)
ALL_TABLES = [*SETTINGS_TABLES, *(kind.table for kind in COMPONENT_KINDS)]


@attrs.frozen
class Recipe:
    """A checked recipe: the settings and the component specs, by table."""

    source: str
    data: dict[str, Any]
    run: RunSettings
    train: TrainSettings
    components: dict[str, list[ComponentSpec]]
    #: The ``[run]`` settings that plugins declare (``ebmkit_run_settings``), defaults filled in.
    plugin_settings: dict[str, Any] = attrs.field(factory=dict)
    #: The registries the recipe was checked against: a run builds and calls hooks with these.
    registries: Registries | None = attrs.field(default=None, eq=False, repr=False)

    def run_setting(self, name: str) -> Any:
        """A ``[run]`` setting that a plugin declared (``ebmkit_run_settings``)."""
        try:
            return self.plugin_settings[name]
        except KeyError:
            raise EbmkitError(f"[run] has no setting {name!r} that a loaded plugin declares{did_you_mean_hint(name, self.plugin_settings)}") from None

    def one(self, table: str) -> ComponentSpec | None:
        specs = self.components.get(table, [])
        return specs[0] if specs else None

    def many(self, table: str) -> list[ComponentSpec]:
        return list(self.components.get(table, []))

    def specs(self) -> Iterator[ComponentSpec]:
        """Every component spec of the recipe, nested ones included, in table order."""
        for kind in COMPONENT_KINDS:
            for spec in self.components.get(kind.table, []):
                yield from spec.nested()

    def resolved(self) -> dict[str, Any]:
        """The recipe with every parameter written out, defaults included: what the run used.

        Values that TOML cannot hold (None, the default of optional parameters) are left out.
        """
        out: dict[str, Any] = {name: _toml_table(attrs.asdict(getattr(self, name))) for name in SETTINGS_TABLES}
        out["run"].update(_toml_table(self.plugin_settings))
        for kind in COMPONENT_KINDS:
            specs = self.components.get(kind.table)
            if specs:
                tables = [_toml_table(table_of(spec.record())) for spec in specs]
                out[kind.table] = tables if kind.many else tables[0]
        return out


def _toml_table(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _toml_table(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_toml_table(v) for v in value]
    return value


# -- overrides ----------------------------------------------------------------------------
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``key.path=value``; the value is read as TOML, or kept as a plain string."""
    if "=" not in text:
        raise EbmkitError(f"--set expects key.path=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise EbmkitError(f"--set expects key.path=value, got {text!r}: the key is empty")
    path: list[str | int] = []
    for part in key.split("."):
        part = part.strip()
        segments = _SEGMENT.findall(part)
        if not segments or _SEGMENT.sub("", part):
            raise EbmkitError(
                f"--set expects key.path=value, got {text!r}: cannot read {repr(part) if part else 'an empty part'} in the "
                f"key {key.strip()!r} (write table.key, table.0.key or table[0].key)"
            )
        for name, index in segments:
            path.append(int(index) if index else (int(name) if name.isdigit() else name))
    try:
        document = tomllib.loads(f"v = {raw.strip()}")
    except (tomllib.TOMLDecodeError, RecursionError):
        document = {}
    value = document["v"] if list(document) == ["v"] else raw.strip()
    return path, value


def _path_text(path: Sequence[str | int]) -> str:
    """``["losses", 0, "weight"]`` -> ``losses[0].weight``."""
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")


def _entries(array: list[Any]) -> str:
    return f"{len(array)} entr{'y' if len(array) == 1 else 'ies'}"


def _describe(node: Any) -> str:
    if isinstance(node, dict):
        return "a table"
    if isinstance(node, list):
        return f"an array of {_entries(node)}"
    return f"{node!r} ({type(node).__name__})"


def _set_value(data: dict[str, Any], path: list[str | int], value: Any) -> str | None:
    """Set ``value`` at ``path`` in ``data`` (creating missing tables); what went wrong, or None."""
    node: Any = data
    for depth, key in enumerate(path):
        above = _path_text(path[:depth]) or "the recipe"
        if isinstance(key, int):
            if not isinstance(node, list):
                return f"{above} is {_describe(node)}, not an array: there is no entry {key}"
            if key >= len(node):
                return f"index {key} is out of range: {above} has {_entries(node)}"
        elif not isinstance(node, dict):
            hint = f"; give an index, e.g. {_path_text([*path[:depth], 0, *path[depth:]])}" if isinstance(node, list) else ""
            return f"cannot set {key!r} inside {above}, which is {_describe(node)}, not a table{hint}"
        if depth == len(path) - 1:
            node[key] = value
        else:
            if isinstance(key, str) and key not in node:
                node[key] = [] if isinstance(path[depth + 1], int) else {}
            node = node[key]
    return None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> list[RecipeProblem]:
    problems = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except EbmkitError as exc:
            problems.append(RecipeProblem("--set", str(exc)))
            continue
        problem = _set_value(data, path, value)
        if problem is not None:
            problems.append(RecipeProblem(f"--set {text}", problem))
    return problems


# -- validation ---------------------------------------------------------------------------
def _check_settings(cls: type, table: Any, where: str) -> tuple[Any, list[RecipeProblem]]:
    """Check a settings table; a field whose type is itself a settings class is a sub-table."""
    if not isinstance(table, dict):
        return None, [RecipeProblem(where, f"expected a table, got {table!r}")]
    table, problems = dict(table), []
    subtables = {name: tp for name, tp in params_.field_types(cls).items() if isinstance(tp, type) and attrs.has(tp)}
    for name, sub in subtables.items():
        if name in table:
            table[name], found = _check_settings(sub, table[name], f"{where}.{name}")
            problems += found
    if problems:
        return None, problems
    values, problems = params_.check(cls, table, where, f"[{where}]")
    return (cls(**values) if values is not None else None), problems


def _plugin_run_settings(table: Any, registries: Registries) -> tuple[Any, dict[str, Any], list[RecipeProblem]]:
    """Split ``[run]`` into ebmkit's own settings and those the plugins declare, checking the
    latter against their Keys (defaults filled in)."""
    if not isinstance(table, dict):
        return table, {}, []  # _check_settings says what is wrong
    own, core, problems = dict(table), set(attrs.fields_dict(RunSettings)), []
    declared = {}
    for name, (key, plugin) in registries.run_settings.items():
        if name in core:
            problems.append(RecipeProblem(f"[run].{name}", f"plugin {plugin!r} declares [run].{name}, which is ebmkit's own setting"))
        else:
            declared[name] = key
    values, found = check_keys(own, declared, "[run]")
    return own, values, problems + found


def _check_tables(kind: Kind, raw: Any, registries: Registries) -> tuple[list[ComponentSpec], list[RecipeProblem]]:
    if kind.many and not isinstance(raw, list):
        return [], [RecipeProblem(kind.table, f"expected an array of tables {kind.recipe_table}")]
    if not kind.many and isinstance(raw, list):
        return [], [RecipeProblem(kind.table, f"expected one table {kind.recipe_table}, got an array")]
    if kind.many and kind.required and not raw:
        return [], [RecipeProblem(kind.table, f"{kind.recipe_table} is empty: a recipe needs at least one {kind.singular}")]
    entries = [(item, f"{kind.table}[{i}]") for i, item in enumerate(raw)] if kind.many else [(raw, kind.table)]
    specs, problems = [], []
    for item, where in entries:
        spec, found = registries.check_table(kind, item, where)
        problems += found
        if spec is not None:
            specs.append(spec)
    return specs, problems


def _check_capabilities(specs: list[ComponentSpec], registries: Registries) -> list[RecipeProblem]:
    """Every capability a component ``requires`` must be ``provided`` by a component of the recipe."""
    provided = {capability for spec in specs for capability in spec.entry.provides}
    problems = []
    for spec in specs:
        for capability in spec.entry.requires:
            if capability in provided:
                continue
            message = f"{spec.entry.label} requires {capability!r}, which no component of this recipe provides"
            providers = registries.providers(capability)
            message += f"; it is provided by {', '.join(e.label for e in providers)}" if providers else ""
            problems.append(RecipeProblem(spec.where, message))
    return problems


def validate(data: Mapping[str, Any], source: str = "<recipe>", registries: Registries | None = None) -> Recipe:
    """Check a recipe's data; raise :class:`RecipeError` listing every problem."""
    registries = registries or default_registries()
    problems: list[RecipeProblem] = []
    for key in data:
        if key not in ALL_TABLES:
            message = f"unknown table [{key}]"
            message += did_you_mean_hint(key, ALL_TABLES, table=True)
            problems.append(RecipeProblem(f"[{key}]", message + f"\n tables: {', '.join(ALL_TABLES)}"))

    settings: dict[str, Any] = {}
    run_table, plugin_settings, found = _plugin_run_settings(data.get("run", {}), registries)
    problems += found
    for table, cls in SETTINGS_TABLES.items():
        if table == "train" and "train" not in data:
            problems.append(RecipeProblem("[train]", "missing table [train] (at least 'steps')"))
            continue
        settings[table], found = _check_settings(cls, run_table if table == "run" else data.get(table, {}), table)
        problems += found

    components: dict[str, list[ComponentSpec]] = {}
    for kind in COMPONENT_KINDS:
        raw = data.get(kind.table)
        if raw is None:
            if kind.required:
                problems.append(RecipeProblem(kind.recipe_table, f"missing {kind.recipe_table}"))
            continue
        components[kind.table], found = _check_tables(kind, raw, registries)
        problems += found
    if not problems:
        problems += _check_capabilities([s for specs in components.values() for top in specs for s in top.nested()], registries)

    if problems:
        raise RecipeError(source, problems)
    return Recipe(source, dict(data), settings["run"], settings["train"], components, plugin_settings, registries)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """``text`` read as TOML; what is wrong with it is a :class:`RecipeError` of ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = str(exc)
    except RecursionError:  # tomllib's own recursion gives up on deep nesting
        problem = "its arrays or tables are nested too deeply to read"
    raise RecipeError(source, [RecipeProblem("", f"not valid TOML: {problem}")])


def load(path: str | Path, overrides: Sequence[str] = (), registries: Registries | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EbmkitError(f"recipe not found: {path}") from None
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text, which TOML must be: byte {exc.object[exc.start]:#04x} at position {exc.start} is not UTF-8"
        raise RecipeError(str(path), [RecipeProblem("", message)]) from None
    except OSError as exc:
        raise EbmkitError(f"cannot read recipe {path}: {exc.strerror}") from None
    if not text.strip():
        required = ["[train]", *(kind.recipe_table for kind in COMPONENT_KINDS if kind.required)]
        raise RecipeError(str(path), [RecipeProblem("", f"the file is empty; a recipe needs at least {', '.join(required)}")])
    data = parse_toml(text, str(path))
    problems = apply_overrides(data, overrides)
    try:
        recipe = validate(data, str(path), registries)
    except RecipeError as exc:
        raise RecipeError(str(path), problems + exc.problems) from None
    if problems:
        raise RecipeError(str(path), problems)
    return recipe
