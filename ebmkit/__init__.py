"""ebmkit: a plugin-based, composable toolkit for energy-based models in PyTorch.

Sign convention: p(x) ∝ exp(−E(x)); an energy returns one value per sample, shape (B,).

This module is the whole public surface: what a plugin, a script or a notebook imports. Every
name in ``__all__`` is a promise kept across releases (CHANGELOG.md records each change to it);
everything else in the package is internal and may move.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ebmkit import _deprecated

__version__ = "0.2.0"

_deprecated.install()

#: Each public name and where it is defined, imported on first use: ``import ebmkit``, and the
#: command line's ``--help`` and ``--version``, do not import torch.
_EXPORTS: dict[str, tuple[str, str]] = {
    "train": ("ebmkit._engine.loop", "train"),
    "Run": ("ebmkit._engine.run", "Run"),
    "resume_recipe": ("ebmkit._engine.run", "resume_recipe"),
    "checked": ("ebmkit._host", "checked"),
    "progress": ("ebmkit._host.console", "progress"),
    "stack_samples": ("ebmkit._host.data", "stack_samples"),
    "Energy": ("ebmkit._host.energy", "Energy"),
    "count_models": ("ebmkit._host.energy", "count_models"),
    "disjunction": ("ebmkit._host.energy", "disjunction"),
    "eager": ("ebmkit._host.energy", "eager"),
    "energy_and_grad": ("ebmkit._host.energy", "energy_and_grad"),
    "ComponentBuildError": ("ebmkit._host.errors", "ComponentBuildError"),
    "EbmkitError": ("ebmkit._host.errors", "EbmkitError"),
    "RecipeError": ("ebmkit._host.errors", "RecipeError"),
    "RankLost": ("ebmkit._host.errors", "RankLost"),
    "RunInterrupted": ("ebmkit._host.errors", "RunInterrupted"),
    "TrainingDiverged": ("ebmkit._host.errors", "TrainingDiverged"),
    "UnknownComponentError": ("ebmkit._host.errors", "UnknownComponentError"),
    "did_you_mean": ("ebmkit._host.errors", "did_you_mean"),
    "did_you_mean_hint": ("ebmkit._host.errors", "did_you_mean_hint"),
    "hookimpl": ("ebmkit._host.hookimpl", "hookimpl"),
    "create": ("ebmkit._host.installed", "create"),
    "list_components": ("ebmkit._host.installed", "list_components"),
    "registered": ("ebmkit._host.installed", "registered"),
    "registries": ("ebmkit._host.installed", "default_registries"),
    "Key": ("ebmkit._host.kinds", "Key"),
    "INFINITE_OK": ("ebmkit._host.params", "INFINITE_OK"),
    "Keyed": ("ebmkit._host.params", "Keyed"),
    "component": ("ebmkit._host.params", "component"),
    "low_below_high": ("ebmkit._host.params", "low_below_high"),
    "Buffer": ("ebmkit._host.protocols", "Buffer"),
    "Conditioning": ("ebmkit._host.protocols", "Conditioning"),
    "Dataset": ("ebmkit._host.protocols", "Dataset"),
    "EvalContext": ("ebmkit._host.protocols", "EvalContext"),
    "Evaluator": ("ebmkit._host.protocols", "Evaluator"),
    "Loss": ("ebmkit._host.protocols", "Loss"),
    "LossOutput": ("ebmkit._host.protocols", "LossOutput"),
    "MultiScale": ("ebmkit._host.protocols", "MultiScale"),
    "Needs": ("ebmkit._host.protocols", "Needs"),
    "ReferenceSet": ("ebmkit._host.protocols", "ReferenceSet"),
    "SampleResult": ("ebmkit._host.protocols", "SampleResult"),
    "Sampler": ("ebmkit._host.protocols", "Sampler"),
    "Stateful": ("ebmkit._host.protocols", "Stateful"),
    "StepContext": ("ebmkit._host.protocols", "StepContext"),
    "StepResult": ("ebmkit._host.protocols", "StepResult"),
    "TrainBatch": ("ebmkit._host.protocols", "TrainBatch"),
    "Transition": ("ebmkit._host.protocols", "Transition"),
    "diagnostics": ("ebmkit._host.protocols", "diagnostics"),
    "is_multiscale": ("ebmkit._host.protocols", "is_multiscale"),
    "unwrap": ("ebmkit._host.protocols", "unwrap"),
    "normal_like": ("ebmkit._host.random", "normal_like"),
    "ComponentSpec": ("ebmkit._host.registry", "ComponentSpec"),
    "compose": ("ebmkit._model.expression", "compose"),
    "save_grid": ("ebmkit._model.grid", "save_grid"),
    "load": ("ebmkit._model.load", "load"),
    "sample": ("ebmkit._model.sampling", "sample"),
    "load_recipe": ("ebmkit._recipes.recipe", "load"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'ebmkit' has no attribute {name!r}") from None
    found = importlib.import_module(module)
    value = getattr(found, attribute) if hasattr(found, attribute) else importlib.import_module(f"{module}.{attribute}")
    globals()[name] = value  # (looked up once)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what _EXPORTS names, for type checkers and editors (a test keeps the two equal)
    from ebmkit._engine.loop import train
    from ebmkit._engine.run import Run, resume_recipe
    from ebmkit._host import checked
    from ebmkit._host.console import progress
    from ebmkit._host.data import stack_samples
    from ebmkit._host.energy import Energy, count_models, disjunction, eager, energy_and_grad
    from ebmkit._host.errors import (
        ComponentBuildError,
        EbmkitError,
        RankLost,
        RecipeError,
        RunInterrupted,
        TrainingDiverged,
        UnknownComponentError,
        did_you_mean,
        did_you_mean_hint,
    )
    from ebmkit._host.hookimpl import hookimpl
    from ebmkit._host.installed import create, list_components, registered
    from ebmkit._host.installed import default_registries as registries
    from ebmkit._host.kinds import Key
    from ebmkit._host.params import INFINITE_OK, Keyed, component, low_below_high
    from ebmkit._host.protocols import (
        Buffer,
        Conditioning,
        Dataset,
        EvalContext,
        Evaluator,
        Loss,
        LossOutput,
        MultiScale,
        Needs,
        ReferenceSet,
        SampleResult,
        Sampler,
        Stateful,
        StepContext,
        StepResult,
        TrainBatch,
        Transition,
        diagnostics,
        is_multiscale,
        unwrap,
    )
    from ebmkit._host.random import normal_like
    from ebmkit._host.registry import ComponentSpec
    from ebmkit._model.expression import compose
    from ebmkit._model.grid import save_grid
    from ebmkit._model.load import load
    from ebmkit._model.sampling import sample
    from ebmkit._recipes.recipe import load as load_recipe

__all__ = [
    # Using ebmkit: build, train, load, sample and compose energies
    "compose",
    "create",
    "disjunction",
    "list_components",
    "load",
    "load_recipe",
    "registries",
    "resume_recipe",
    "sample",
    "save_grid",
    "train",
    # The plugin contract: the marker, and what each kind of component is
    "hookimpl",
    "registered",
    "Run",
    "Buffer",
    "Conditioning",
    "Dataset",
    "Energy",
    "EvalContext",
    "Evaluator",
    "Loss",
    "LossOutput",
    "MultiScale",
    "Needs",
    "ReferenceSet",
    "SampleResult",
    "Sampler",
    "Stateful",
    "StepContext",
    "StepResult",
    "TrainBatch",
    "Transition",
    # Helpers for components: energies and gradients, parameters, randomness, data, calls
    "checked",
    "component",
    "ComponentSpec",
    "count_models",
    "diagnostics",
    "eager",
    "energy_and_grad",
    "INFINITE_OK",
    "is_multiscale",
    "Key",
    "Keyed",
    "low_below_high",
    "normal_like",
    "progress",
    "stack_samples",
    "unwrap",
    # Errors
    "ComponentBuildError",
    "EbmkitError",
    "RankLost",
    "RecipeError",
    "RunInterrupted",
    "TrainingDiverged",
    "UnknownComponentError",
    "did_you_mean",
    "did_you_mean_hint",
    "__version__",
]
