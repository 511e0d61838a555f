"""ebmkit: a plugin-based, composable toolkit for energy-based models in PyTorch.

Sign convention: p(x) ∝ exp(−E(x)); an energy returns one value per sample, shape (B,).

This module is the whole public surface: what a plugin, a script or a notebook imports. Every
name in ``__all__`` is a promise kept across releases (CHANGELOG.md records each change to it);
everything else in the package is internal and may move.
"""

from ebmkit import _deprecated
from ebmkit._engine.loop import train
from ebmkit._engine.run import Run, resume_recipe
from ebmkit._host import checked
from ebmkit._host.console import progress
from ebmkit._host.data import stack_samples
from ebmkit._host.energy import Energy, count_models, disjunction, eager, energy_and_grad
from ebmkit._host.errors import (
    ComponentBuildError,
    EbmkitError,
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

__version__ = "0.2.0"

_deprecated.install()

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
    "RecipeError",
    "RunInterrupted",
    "TrainingDiverged",
    "UnknownComponentError",
    "did_you_mean",
    "did_you_mean_hint",
    "__version__",
]
