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

from ebmkit.data import chain_starts
from ebmkit.errors import ComponentBuildError, RecipeError, RecipeProblem
from ebmkit.protocols import max_graph_steps, needs_of
from ebmkit.recipe import Recipe
from ebmkit.registry import ComponentSpec


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


def build(recipe: Recipe, device: torch.device | str = "cpu") -> Components:
    """Build every component of ``recipe`` (the energy on ``device``) and check them together.

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

    dataset = attempt(recipe.one("data"))
    context: dict[str, Any] = {}
    if dataset is not None:
        noise = chain_starts(dataset.sample_shape, dataset.domain, device)
        context = {"data_shape": tuple(dataset.sample_shape), "num_classes": dataset.num_classes, "noise": noise}
    energy = attempt(recipe.one("energy"), **context) if dataset is not None else None
    if energy is not None:
        energy = energy.to(device)
    sampler = attempt(recipe.one("sampler"), **context)
    buffer = attempt(recipe.one("buffer"), **context) if dataset is not None else None
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
    return problems
