"""``ebmkit compose``: sample a composition of trained energies, from the command line or a TOML file.

A compose file has a ``[compose]`` table (the expression, the models by name, how many
samples), an optional ``[sampler]`` and optional ``[[evaluators]]``::

    [compose]
    expression = "smile + male"
    models = { smile = "runs/smiling", male = "runs/male" }

Without ``[sampler]``, the composition is sampled with 100 steps of the first model's own
training transition (Langevin, say), its step size divided by the number of models.
The expression is read by :mod:`ebmkit._model.expression`; nothing of the file or the command line
is ever evaluated as Python.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from ebmkit._host import checked
from ebmkit._model import expression as expression_
from ebmkit._host.errors import EbmkitError, RecipeError, RecipeProblem, did_you_mean_hint
from ebmkit._host.kinds import kind_named
from ebmkit._host.registry import Registries
from ebmkit._host.installed import default_registries

TABLES = ("compose", "sampler", "evaluators")


@attrs.frozen(kw_only=True)
class ComposeSettings:
    """``[compose]``: what to compose and how many samples to draw."""

    expression: str
    #: model name -> run folder or checkpoint folder
    models: dict[str, str]
    num_samples: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    #: chains sampled at once (the rest waits its turn)
    batch_size: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    nrow: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    seed: int = 0
    device: str = "cpu"
    #: the models' EMA weights (as the reference composes), else the raw ones
    ema: bool = True
    #: what evaluators score the samples against (default: the expression itself), e.g. the
    #: samples of "color.given(red)" alone scored against "color.given(red) + shape.given(circle)"
    score: str | None = None


@attrs.frozen
class ComposePlan:
    """A checked compose file: nothing is loaded yet."""

    source: str
    settings: ComposeSettings
    data: dict[str, Any]


def is_compose_file(path: str | Path) -> bool:
    """Whether ``path`` is a readable TOML file with a ``[compose]`` table (else it is read as a recipe)."""
    try:
        return "compose" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return False  # (reading it as a recipe reports what is wrong)


def plan(
    path: str | Path | None, expression: str | None = None, models: Sequence[str] = (), overrides: Sequence[str] = ()
) -> ComposePlan:
    """Read a compose file (optional), apply the command line, and check everything that
    needs no model: the tables, the settings and the expression's grammar."""
    from ebmkit._recipes.recipe import _check_settings, apply_overrides, parse_toml

    source = str(path) if path is not None else "ebmkit compose"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EbmkitError(f"compose file not found: {path}") from None
        except UnicodeDecodeError as exc:
            raise RecipeError(source, [RecipeProblem("", f"not valid TOML: {exc}")]) from None
        data = parse_toml(text, source)
    table = data.setdefault("compose", {})
    problems: list[RecipeProblem] = []
    if not isinstance(table, dict):
        raise RecipeError(source, [RecipeProblem("compose", f"expected a table, got {table!r}")])
    if expression is not None:
        table["expression"] = expression
    given = table.setdefault("models", {})
    for item in models:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            problems.append(RecipeProblem("--model", f"expected NAME=RUN_DIR, got {item!r}"))
        elif isinstance(given, dict):
            given[name.strip()] = folder.strip()
    problems += apply_overrides(data, overrides)
    for key in data:
        if key not in TABLES:
            problems.append(RecipeProblem(f"[{key}]", f"unknown table [{key}]{did_you_mean_hint(key, TABLES, table=True)}; tables: {', '.join(TABLES)}"))
    if "expression" not in table:
        problems.append(RecipeProblem("compose.expression", "missing: give the expression, e.g. ebmkit compose \"smile + male\" --model smile=RUN_DIR ..."))
    settings, found = _check_settings(ComposeSettings, table, "compose") if "expression" in table else (None, [])
    problems += found
    if problems:
        raise RecipeError(source, problems)
    for name in _model_names(settings):  # the grammar, before anything is loaded
        if name not in settings.models:
            hint = did_you_mean_hint(name, settings.models)
            known = ", ".join(settings.models) or "none"
            raise expression_.ExpressionError(
                f"the expression names a model {name!r} that was not given{hint} (models given: {known}); add --model {name}=RUN_DIR"
            )
    return ComposePlan(source, settings, data)


def _model_names(settings: ComposeSettings) -> list[str]:
    """The models the expression and the score expression name, in order of first use."""
    names = expression_.model_names(expression_.parse(settings.expression))
    if settings.score is not None:
        names += [n for n in expression_.model_names(expression_.parse(settings.score)) if n not in names]
    return names


def default_sampler(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """100 steps of a model's own training transition (no augmentation: a flip or a colour jitter
    can change the very attributes being composed; a compose file adds it, as the paper's does)."""
    transitions = (recipe.get("sampler") or {}).get("transitions") or []
    steps = [t for t in transitions if isinstance(t, dict) and "step_size" in t]
    if not steps:
        raise EbmkitError(
            "the first model's recipe has no transition with a step size to compose with; give a [sampler] in a compose file"
        )
    transition = {k: v for k, v in steps[0].items() if k != "every"}
    return {"name": "rounds", "transition": transition, "rounds": 0, "final_steps": 100}


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        both_tables = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = _merged(merged[key], value) if both_tables else value
    return merged


def compose(plan_: ComposePlan, out_dir: str | Path, *, console: Any = None, registries: Registries | None = None) -> dict[str, Any]:
    """Load the models, build the composed energy, draw the samples and write them to ``out_dir``:
    ``samples.png`` (a grid), ``samples.safetensors``, ``compose.json``, and what evaluators write."""
    from ebmkit._engine.builtin.evaluation import run_evaluator
    from ebmkit._engine.checkpoint import run_folder_of
    from ebmkit._host.data import chain_starts
    from ebmkit._host.protocols import EvalContext
    from ebmkit._engine.run import usable_device

    registries = registries or default_registries()
    settings = plan_.settings
    out = Path(out_dir)
    if (out / "compose.json").exists():
        raise EbmkitError(f"{out} already holds a composition (compose.json); choose another --out")
    device = usable_device(settings)  # type: ignore[arg-type]
    names = _model_names(settings)
    folders, metas, models = _load_models(settings, names, device, registries)
    energy = expression_.build(settings.expression, models)
    requirement = expression_.requirement(settings.score or settings.expression, models)
    first = metas[names[0]]
    shape = _shared_shape(names, metas)
    sampler_spec, evaluator_specs = _checked_specs(plan_, first.get("recipe", {}), registries)

    dataset = _dataset(first.get("recipe", {}), registries) if evaluator_specs or "domain" not in first["energy"] else None
    domain = first["energy"].get("domain") if "domain" in first["energy"] else dataset.domain
    noise = chain_starts(shape, tuple(domain) if domain is not None else None, device)
    context = {"data_shape": shape, "num_classes": None, "noise": noise}
    sampler = sampler_spec.build(**context)
    evaluators = [(spec.entry.name, spec.build(**context)) for spec in evaluator_specs]

    out.mkdir(parents=True, exist_ok=True)
    samples = _draw_samples(sampler, energy, noise, settings, console)
    _write_samples(samples, out, settings.nrow)
    ctx = EvalContext(energy, dataset, sampler, noise, out, 0, device, None, samples=samples, requirement=requirement,
                      cache_dir=run_folder_of(folders[names[0]]) / "cache")
    metrics: dict[str, float] = {}
    for name, evaluator in evaluators:
        metrics.update(run_evaluator(name, evaluator, ctx))
    record = {
        "expression": settings.expression,
        "energy": str(energy),
        "requirement": str(requirement) if requirement is not None else None,
        "models": {name: {"checkpoint": str(folders[name]), "step": metas[name].get("step")} for name in names},
        "settings": attrs.asdict(settings),
        "sampler": sampler_spec.record(),
        "metrics": metrics,
    }
    (out / "compose.json").write_text(json.dumps(record, indent=1))
    return record


def _load_models(
    settings: ComposeSettings, names: Sequence[str], device: torch.device, registries: Registries
) -> tuple[dict[str, Path], dict[str, dict[str, Any]], dict[str, Any]]:
    """Each named model's checkpoint folder, its meta and its energy (EMA weights if ``settings.ema``)."""
    from ebmkit._engine.checkpoint import find_checkpoint, read_meta
    from ebmkit._model.load import load

    folders = {name: find_checkpoint(settings.models[name]) for name in names}
    metas = {name: read_meta(folder) for name, folder in folders.items()}
    models = {name: load(folders[name], ema=settings.ema, device=device, registries=registries) for name in names}
    return folders, metas, models


def _shared_shape(names: Sequence[str], metas: Mapping[str, Mapping[str, Any]]) -> tuple[int, ...]:
    """The data shape every model was trained on; composed models must agree on it."""
    shape = tuple(metas[names[0]]["energy"]["data_shape"])
    for name in names[1:]:
        other = tuple(metas[name]["energy"]["data_shape"])
        if other != shape:
            raise EbmkitError(f"{name} models data of shape {other}, {names[0]} of shape {shape}: composed models must share the data's shape")
    return shape


def _checked_specs(plan_: ComposePlan, first_recipe: Mapping[str, Any], registries: Registries) -> tuple[Any, list[Any]]:
    """The sampler's spec (the first model's default, adjusted by ``[sampler]``) and the evaluators';
    raises :class:`RecipeError` listing every problem of both."""
    sampler_table = plan_.data.get("sampler") or {}
    if "name" not in sampler_table:  # `--set sampler.final_steps=20` adjusts the default sampler
        sampler_table = _merged(default_sampler(first_recipe), sampler_table)
    sampler_spec, problems = registries.check_table(kind_named("samplers"), sampler_table, "sampler")
    evaluator_specs = []
    raw_evaluators = plan_.data.get("evaluators", [])
    if not isinstance(raw_evaluators, list):
        problems.append(RecipeProblem("evaluators", "expected an array of tables [[evaluators]]"))
        raw_evaluators = []
    for i, table in enumerate(raw_evaluators):
        spec, found = registries.check_table(kind_named("evaluators"), table, f"evaluators[{i}]")
        problems += found
        evaluator_specs.append(spec)
    if problems:
        raise RecipeError(plan_.source, problems)
    return sampler_spec, evaluator_specs


def _draw_samples(sampler: Any, energy: Any, noise: Any, settings: ComposeSettings, console: Any) -> torch.Tensor:
    """``settings.num_samples`` samples, ``settings.batch_size`` chains at a time, from ``settings.seed``."""
    torch.manual_seed(settings.seed)
    chunks = []
    status = console.status(f"sampling {settings.num_samples} chains of {energy}") if console is not None else contextlib.nullcontext()
    with status:
        for start in range(0, settings.num_samples, settings.batch_size):
            n = min(settings.batch_size, settings.num_samples - start)
            chunks.append(checked.sample(sampler, energy, noise(n)).x.detach())
    return torch.cat(chunks)


def _write_samples(samples: torch.Tensor, out: Path, nrow: int) -> None:
    import safetensors.torch

    from ebmkit._model.grid import save_grid

    save_grid(samples, out / "samples.png", nrow=nrow)  # small images scaled up to be seen
    safetensors.torch.save_file({"samples": samples.cpu().contiguous()}, str(out / "samples.safetensors"))


def _dataset(recipe: Mapping[str, Any], registries: Registries) -> Any:
    table = recipe.get("data")
    spec, problems = registries.check_table(kind_named("datasets"), table, "data")
    if problems:
        raise RecipeError("the first model's recipe", problems)
    return spec.build()
