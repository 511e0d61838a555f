"""ebmkit: a plugin-based, composable toolkit for energy-based models in PyTorch.

Sign convention: p(x) ∝ exp(−E(x)); an energy returns one value per sample, shape (B,).

This module is the whole public surface: what a plugin, a script or a notebook imports. Every
name in ``__all__`` is a promise kept across releases (CHANGELOG.md records each change to it);
everything else in the package is internal and may move.
"""

from ebmkit import checked
from ebmkit._hookimpl import hookimpl
from ebmkit.checkpoint import load
from ebmkit.console import progress
from ebmkit.data import stack_samples
from ebmkit.energy import Energy, count_models, disjunction, energy_and_grad, is_multiscale, unwrap
from ebmkit.errors import (
    ComponentBuildError,
    EbmkitError,
    RecipeError,
    RunInterrupted,
    TrainingDiverged,
    UnknownComponentError,
    did_you_mean,
)
from ebmkit.expression import compose
from ebmkit.kinds import Key
from ebmkit.params import INFINITE_OK, Keyed, component, low_below_high
from ebmkit.plugins import registered
from ebmkit.protocols import (
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
)
from ebmkit.random import normal_like
from ebmkit.recipe import load as load_recipe
from ebmkit.registry import ComponentSpec, create, list_components
from ebmkit.registry import default_registries as registries
from ebmkit.run import Run, resume_recipe
from ebmkit.sampling import sample
from ebmkit.speed import eager
from ebmkit.loop import train

__version__ = "0.2.0"

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
    "__version__",
]
