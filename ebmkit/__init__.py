"""ebmkit: a plugin-based, composable toolkit for energy-based models in PyTorch.

Sign convention: p(x) ∝ exp(−E(x)); an energy returns one value per sample, shape (B,).
"""

from ebmkit._hookimpl import hookimpl
from ebmkit.checkpoint import load
from ebmkit.energy import Energy, disjunction, energy_and_grad
from ebmkit.expression import compose
from ebmkit.protocols import EvalContext, LossOutput, Needs, SampleResult, StepContext, StepResult, TrainBatch
from ebmkit.errors import EbmkitError, RecipeError, UnknownComponentError
from ebmkit.registry import create, list_components
from ebmkit.registry import default_registries as registries
from ebmkit.sampling import sample

__version__ = "0.1.0"

__all__ = [
    "Energy",
    "EbmkitError",
    "EvalContext",
    "LossOutput",
    "Needs",
    "SampleResult",
    "StepContext",
    "StepResult",
    "TrainBatch",
    "RecipeError",
    "UnknownComponentError",
    "compose",
    "create",
    "disjunction",
    "energy_and_grad",
    "hookimpl",
    "list_components",
    "load",
    "registries",
    "sample",
    "__version__",
]
