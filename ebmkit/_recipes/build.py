"""Building a recipe's components: the second half of validation, done before any run folder exists.

``ebmkit validate`` and ``ebmkit run`` both build every component; a problem anywhere (a
factory that refuses its parameters, an object that is not what its kind promises, a loss
whose needs the sampler cannot meet) is reported with its TOML path, all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from ebmkit._host.data import chain_starts, stack_samples
from ebmkit._host.errors import ComponentBuildError, EbmkitError, RecipeError, RecipeProblem
from ebmkit._host.protocols import max_graph_steps, needs_of
from ebmkit._host.random import rng_state, set_rng_state
from ebmkit._recipes.recipe import Recipe
from ebmkit._host.registry import ComponentSpec


@attrs.frozen
class Placed:
    """A built component of an array table, with its name and the keys the run reads (``weight``, ``every``)."""

    name: str
    component: Any
    keys: dict[str, Any]


@attrs.define
class Components:
    """A recipe's components, built.

    :ivar noise: ``noise(n)`` draws fresh chain starts from the data's domain.
    :ivar built: every built component by TOML path, nested ones included.
    :ivar warnings: things that will not stop the run but probably are not what was meant.
    """

    dataset: Any
    energy: torch.nn.Module
    sampler: Any
    buffer: Any | None
    losses: list[Placed]
    optimizer: torch.optim.Optimizer
    evaluators: list[Placed]
    noise: Callable[[int], torch.Tensor]
    built: dict[str, Any]
    warnings: list[str] = attrs.field(factory=list)


def build(recipe: Recipe, device: torch.device | str = "cpu", *, read_data: bool = True) -> Components:
    """Build every component of ``recipe`` (the energy on ``device``) and check them together.

    :param read_data: False builds everything but the dataset, from what the dataset declares
        without reading (its factory's ``declared(**params)``: sample shape, domain and number of
        classes); the energy is tried on random inputs of that shape, and ``dataset`` is None.
    :raises RecipeError: listing every component that failed, with its TOML path.
    """
    device = torch.device(device)
    problems: list[RecipeProblem] = []
    built: dict[str, Any] = {}

    def attempt(spec: ComponentSpec | None, **context: Any) -> Any:
        if spec is None:
            return None
        try:
            return spec.build(on_built=lambda s, obj: built.__setitem__(s.where, obj), **context)
        except ComponentBuildError as exc:
            problems.append(RecipeProblem(exc.where, exc.message))
            return None

    if read_data:
        dataset = attempt(recipe.one("data"))
        data = None if dataset is None else (tuple(dataset.sample_shape), dataset.domain, dataset.num_classes)
        if dataset is not None:
            batch, problem = _first_batch(recipe, dataset, device)
            if problem is not None:
                problems.append(problem)
                data = None
    else:
        dataset, (data, problem) = None, _declared(recipe.one("data"))
        if problem is not None:
            problems.append(problem)
        else:
            batch = _stand_in_batch(*data, device)
    context: dict[str, Any] = {}
    if data is not None:
        context = {"data_shape": data[0], "num_classes": data[2], "noise": chain_starts(data[0], data[1], device)}
    energy = attempt(recipe.one("energy"), **context) if data is not None else None
    if energy is not None:
        energy = energy.to(device)
        problem = _try_energy(recipe.one("energy"), energy, batch, data[0])
        if problem is not None:
            problems.append(problem)
            energy = None
    sampler = attempt(recipe.one("sampler"), **context)
    buffer = attempt(recipe.one("buffer"), **context) if data is not None else None
    losses = [Placed(s.entry.name, attempt(s, **context), s.keys) for s in recipe.many("losses")]
    optimizer = attempt(recipe.one("optim"), params=list(energy.parameters()), **context) if energy is not None else None
    evaluators = [Placed(s.entry.name, attempt(s, **context), s.keys) for s in recipe.many("evaluators")]
    if problems:
        raise RecipeError(recipe.source, problems)

    components = Components(dataset, energy, sampler, buffer, losses, optimizer, evaluators, context["noise"], built)
    problems += _check_needs(recipe, components)
    if problems:
        raise RecipeError(recipe.source, problems)
    if buffer is not None and not any(needs_of(p.component).negatives for p in losses):
        components.warnings.append("[buffer] is never used: no loss term of this recipe needs negative samples")
    return components


def _declared(spec: ComponentSpec) -> tuple[Any, RecipeProblem | None]:
    """What the dataset of ``spec`` declares without reading: (sample shape, domain, number of classes)."""
    declared = getattr(spec.entry.factory, "declared", None)
    if declared is None:
        return None, RecipeProblem(
            spec.where, f"{spec.entry.label} cannot say what its samples are without reading its data (its factory has "
            "no declared()); validate this recipe where the data is, without --no-data",
        )
    shape, domain, num_classes = declared(**spec.values)
    return (tuple(shape), domain, num_classes), None


def _stand_in_batch(shape: tuple[int, ...], domain: Any, num_classes: int | None, device: torch.device) -> tuple[Any, Any]:
    """Two random samples of the declared shape, in the declared domain, to try the energy on."""
    low, high = domain if domain is not None else (0.0, 1.0)
    x = low + (high - low) * torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(2, dtype=torch.long) if num_classes else None
    return x.to(device), None if cond is None else cond.to(device)


def _first_batch(recipe: Recipe, dataset: Any, device: torch.device) -> tuple[Any, RecipeProblem | None]:
    """Two samples of the data (and their labels) to try the energy on, or what is wrong with the data.

    The random-number states are left as they were (reading may dequantise), so that a run is
    the same with or without this check.
    """
    spec = recipe.one("data")
    if len(dataset) < recipe.train.batch_size:
        return None, RecipeProblem(
            "train.batch_size", f"a batch of {recipe.train.batch_size} is more than the {len(dataset)} samples of "
            f"[{spec.where}] ({spec.entry.label}); make the batch smaller or the dataset larger",
        )
    rng = rng_state(device)
    try:
        x, labels = stack_samples(dataset, range(min(2, len(dataset))))
    except (EbmkitError, OSError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        return None, RecipeProblem(spec.where, f"{spec.entry.label}: cannot read its first samples: {type(exc).__name__}: {exc}")
    finally:
        set_rng_state(device, rng)
    cond = labels.to(device) if labels is not None and dataset.num_classes else None
    return (x.to(device), cond), None


def _try_energy(spec: ComponentSpec, energy: torch.nn.Module, batch: Any, sample_shape: Any) -> RecipeProblem | None:
    """Run the energy once on a small batch of the data: what it cannot take is reported before any run.

    An energy must return one value per sample, shape (B,). Random-number states and the
    energy's buffers (e.g. batch-norm statistics) are left as they were, so that a run is the
    same with or without this check.
    """
    x, cond = batch
    buffers = [(buffer, buffer.clone()) for buffer in energy.buffers()]
    rng = rng_state(x.device)
    try:
        with torch.no_grad():
            out = energy(x, cond)
        problem = None if isinstance(out, torch.Tensor) and tuple(out.shape) == (len(x),) else (
            f"it returned {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}, "
            f"not one energy per sample, shape ({len(x)},)"
        )
    except Exception as exc:  # whatever the energy raises, the recipe asked it to take this data
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        set_rng_state(x.device, rng)
        for buffer, value in buffers:
            buffer.copy_(value)
    if problem is None:
        return None
    return RecipeProblem(
        spec.where, f"{spec.entry.label} cannot take a batch of shape {tuple(x.shape)} from [data] "
        f"(samples of shape {tuple(sample_shape)}): {problem}",
    )


def _check_needs(recipe: Recipe, components: Components) -> list[RecipeProblem]:
    """Each loss term's declared needs, against what the recipe's sampler can give."""
    problems = []
    sampler_spec = recipe.one("sampler")
    most = max_graph_steps(components.sampler)
    for spec, placed in zip(recipe.many("losses"), components.losses, strict=True):
        wanted = needs_of(placed.component).graph_steps
        if wanted > most:
            problems.append(RecipeProblem(
                spec.where,
                f"{spec.entry.label} needs the autograd graph of the sampler's last {wanted} step(s), but "
                f"{sampler_spec.entry.label} keeps at most {most}",
            ))
    sampling = {needs_of(p.component).conditional: spec for spec, p in zip(recipe.many("losses"), components.losses, strict=True)
                if needs_of(p.component).negatives}
    if len(sampling) == 2:
        problems.append(RecipeProblem(
            sampling[False].where,
            f"{sampling[False].entry.label} needs negatives sampled from the marginal (cond=None), but "
            f"{sampling[True].entry.label} needs them given the labels; one recipe samples one way",
        ))
    return problems
