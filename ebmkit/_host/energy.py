"""Energies and their algebra.

Sign convention, used everywhere in ebmkit: an energy assigns each sample a real number
E(x) and the model density is p(x) ∝ exp(−E(x)). Low energy means high probability.
``Energy.forward(x, cond=None)`` returns one energy per sample, shape ``(B,)``; calling an
energy checks that shape.

Operators build composite energies, which are modules themselves:

=================  ============================================  ======================
expression         energy                                        meaning
=================  ============================================  ======================
``E1 + E2``        E1(x) + E2(x)                                 product of experts, AND
``a * E``          a·E(x)                                        inverse temperature a
``E / T``          E(x)/T                                        temperature T
``-E``             −E(x)                                         negation
``E1 - a * E2``    E1(x) − a·E2(x)                               AND NOT (weighted)
``E1 | E2``        −T·logsumexp(−E1(x)/T, −E2(x)/T), T = 1       OR (mixture)
``E.given(c)``     E(x, c)                                       condition fixed to c
``E.given("red")`` E(x, index of "red")                          by class name
=================  ============================================  ======================

``disjunction(E1, E2, temperature=T)`` is the OR with another temperature.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import numbers
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ebmkit._host.errors import EbmkitError
from ebmkit._host.protocols import Conditioning, unwrap

Tensor = torch.Tensor


class EnergyShapeError(EbmkitError):
    """An energy returned something other than one value per sample."""


class Energy(nn.Module):
    """Base class of every energy: a module mapping a batch to one energy per sample.

    Subclasses implement ``forward(x, cond=None)`` returning shape ``(B,)``.
    ``label`` names a leaf in the ``repr`` of expressions (see :meth:`named`).
    """

    label: str | None = None

    def __call__(self, x: Tensor, cond: Tensor | None = None, **kwargs) -> Tensor:
        energy = super().__call__(x, cond, **kwargs)
        if kwargs.get("per_scale"):  # a multi-scale energy's scales apart: (B, S)
            if energy.dim() != 2 or energy.shape[0] != x.shape[0]:
                raise EnergyShapeError(
                    f"{type(self).__name__} returned scale energies of shape {tuple(energy.shape)} for a batch of "
                    f"{x.shape[0]}; with per_scale=True an energy must return shape ({x.shape[0]}, num_scales)"
                )
        elif energy.dim() != 1 or energy.shape[0] != x.shape[0]:
            raise EnergyShapeError(
                f"{type(self).__name__} returned energies of shape {tuple(energy.shape)} for a batch of "
                f"{x.shape[0]}; an energy must return one value per sample, shape ({x.shape[0]},)"
            )
        return energy

    #: What the labels of a conditional energy mean (set by :func:`ebmkit.load` from the
    #: training data), so that ``given`` takes class names; None when unknown.
    conditioning: Conditioning | None = None

    #: How the weights came to be (set by :func:`ebmkit.load`): one record per training run,
    #: earliest first, the loaded checkpoint's own run last. A run that started from another
    #: (``[train].init_from``) adds to its source's history. Each record holds the run folder
    #: (``run``), the checkpoint's name and step (``checkpoint``, ``step``) and the resolved
    #: recipe (``recipe``). Empty for an energy built by hand.
    history: tuple[dict, ...] = ()

    def named(self, label: str) -> Energy:
        """This energy under a name shown in expressions, e.g. ``smile + male``.

        Returns a new handle on the same module and weights; ``self`` keeps its own name, so
        naming one use of an energy never renames it inside another expression.
        """
        handle = copy.copy(self)  # shares parameters, buffers and submodules
        handle.label = label
        return handle

    @property
    def expression(self) -> str:
        return self.label or type(self).__name__

    # -- algebra -----------------------------------------------------------------------
    def __add__(self, other: object) -> Energy:
        if not isinstance(other, nn.Module):
            return NotImplemented
        return SumEnergy([self, other])

    def __radd__(self, other: object) -> Energy:
        # A module that is not an Energy (an energy wrapped by a device strategy) on the left.
        if not isinstance(other, nn.Module):
            return NotImplemented
        return SumEnergy([other, self])

    def __sub__(self, other: object) -> Energy:
        if not isinstance(other, Energy):
            return NotImplemented
        return SumEnergy([self, ScaledEnergy(-1.0, other)])

    def __neg__(self) -> Energy:
        return ScaledEnergy(-1.0, self)

    def __mul__(self, weight: object) -> Energy:
        if not _is_scalar(weight):
            return NotImplemented
        return ScaledEnergy(float(weight), self)  # type: ignore[arg-type]

    __rmul__ = __mul__

    def __truediv__(self, temperature: object) -> Energy:
        if not _is_scalar(temperature):
            return NotImplemented
        if float(temperature) == 0:  # type: ignore[arg-type]
            raise EbmkitError("cannot divide an energy by a temperature of 0")
        return ScaledEnergy(1.0 / float(temperature), self)  # type: ignore[arg-type]

    def __or__(self, other: object) -> Energy:
        if not isinstance(other, Energy):
            return NotImplemented
        return disjunction(self, other)

    def given(self, cond: Tensor | int | str | Sequence[float] | None = None, **by_attribute: str | bool) -> Energy:
        """This energy with its condition fixed: an unconditional energy of ``x`` alone.

        :param cond: a class name (``"red"``) when the energy knows its :attr:`conditioning`;
            or a class index (int); or one condition vector as floats (attributes, or a
            one-hot written as floats), used for every sample; or a batch of conditions with
            one row per sample (a 1-D integer tensor is read as one class label per sample).
        :param by_attribute: the class by attribute name instead, ``given(color="red")``;
            ``given(Smiling=True)`` for a yes/no attribute.
        """
        if by_attribute:
            if cond is not None or len(by_attribute) != 1:
                raise EbmkitError("given takes one condition: a class name, given(\"red\"), or one attribute, given(color=\"red\")")
            ((attribute, value),) = by_attribute.items()
            conditioning = self._conditioning(f"given({attribute}={value!r})")
            if attribute != conditioning.attribute:
                raise EbmkitError(
                    f"{self.expression} is conditioned on {conditioning.attribute!r}, not {attribute!r}: "
                    f"write given({conditioning.attribute}=...); its classes: {', '.join(conditioning.classes)}"
                )
            return ConditionedEnergy(self, conditioning.index(value), shown=f"{attribute}={value!r}")
        if cond is None:
            raise EbmkitError("given needs a condition: a class name, a class index, or a condition tensor")
        if isinstance(cond, str | bool):  # a bool is a yes/no attribute's class, never an index
            return ConditionedEnergy(self, self._conditioning(f"given({cond!r})").index(cond), shown=repr(cond))
        return ConditionedEnergy(self, cond)

    def _conditioning(self, call: str) -> Conditioning:
        if self.conditioning is None:
            raise EbmkitError(
                f"{_wrap(self.expression, self)}.{call}: this energy does not know the names of its classes. Energies "
                "loaded with ebmkit.load from a model trained on labelled data do (condition each model of a composition "
                "apart: a.given('red') + b.given('circle')); otherwise give a label index, e.g. given(0)"
            )
        return self.conditioning


def _is_scalar(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, Tensor) and value.numel() == 1


def _expression(module: nn.Module) -> str:
    return module.expression if isinstance(module, Energy) else f"<{type(module).__name__}>"


def _wrap(expression: str, child: Energy) -> str:
    return f"({expression})" if isinstance(child, SumEnergy | DisjunctionEnergy) else expression


class SumEnergy(Energy):
    """E(x) = Σ_k E_k(x): a product of experts. Nested sums are flattened."""

    def __init__(self, terms: Sequence[nn.Module]):
        super().__init__()
        flat: list[nn.Module] = []
        for term in terms:
            flat.extend(term.terms if isinstance(term, SumEnergy) else [term])
        self.terms = nn.ModuleList(flat)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return torch.stack([term(x, cond) for term in self.terms]).sum(0)

    @property
    def expression(self) -> str:
        parts = []
        for i, term in enumerate(self.terms):
            if isinstance(term, ScaledEnergy) and term.weight < 0 and i > 0:
                magnitude = -term.weight
                inner = _wrap(term.inner.expression, term.inner)
                parts.append(f"- {inner}" if magnitude == 1 else f"- {magnitude:g} * {inner}")
            else:
                parts.append(("+ " if i else "") + _expression(term))
        return " ".join(parts)

    def __repr__(self) -> str:
        return self.expression


class ScaledEnergy(Energy):
    """E(x) = a·E_inner(x). A weight a > 1 sharpens, 0 < a < 1 flattens, a < 0 negates."""

    def __init__(self, weight: float, inner: Energy):
        super().__init__()
        if isinstance(inner, ScaledEnergy):
            weight, inner = weight * inner.weight, inner.inner
        self.weight = float(weight)
        self.inner = inner

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.weight * self.inner(x, cond)

    @property
    def expression(self) -> str:
        inner = _wrap(self.inner.expression, self.inner)
        if self.weight == -1:
            return f"-{inner}"
        return f"{self.weight:g} * {inner}"

    def __repr__(self) -> str:
        return self.expression


class DisjunctionEnergy(Energy):
    """E(x) = −T·logsumexp_k(−E_k(x)/T): an OR (mixture) of energies at temperature T."""

    def __init__(self, terms: Sequence[Energy], temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise EbmkitError(f"the temperature of a disjunction must be positive, got {temperature}")
        flat: list[Energy] = []
        for term in terms:
            same = isinstance(term, DisjunctionEnergy) and term.temperature == temperature
            flat.extend(term.terms if same else [term])
        self.terms = nn.ModuleList(flat)
        self.temperature = float(temperature)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        stacked = torch.stack([-term(x, cond) / self.temperature for term in self.terms])
        return -self.temperature * torch.logsumexp(stacked, dim=0)

    @property
    def expression(self) -> str:
        body = " | ".join(_wrap(t.expression, t) if isinstance(t, SumEnergy) else t.expression for t in self.terms)
        return body if self.temperature == 1 else f"disjunction({body}, temperature={self.temperature:g})"

    def __repr__(self) -> str:
        return self.expression


def disjunction(*energies: Energy, temperature: float = 1.0) -> Energy:
    """OR of energies: −T·logsumexp(−E_k/T). T → 0 gives min_k E_k; T = 1 a mixture."""
    if len(energies) < 2:
        raise EbmkitError("a disjunction needs at least two energies")
    return DisjunctionEnergy(energies, temperature)


class ConditionedEnergy(Energy):
    """E(x) = E_inner(x, c) with the condition c fixed."""

    def __init__(self, inner: Energy, cond: Tensor | int | Sequence[float], *, shown: str | None = None):
        super().__init__()
        self.inner = inner
        self.shown = shown  # how the condition was given by name ("'red'", "color='red'"), for the expression
        tensor = torch.as_tensor(cond)
        if tensor.is_floating_point() is False and tensor.dim() > 1:
            raise EbmkitError(f"a class condition must be an int or a 1-D tensor of ints, got shape {tuple(tensor.shape)}")
        self.register_buffer("cond", tensor, persistent=False)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            raise EbmkitError(f"{self.expression} already has its condition fixed; do not pass another")
        fixed = self.cond.to(x.device)
        batch = x.shape[0]
        if fixed.dim() == 0:
            fixed = fixed.expand(batch)
        elif fixed.dim() == 1 and fixed.is_floating_point():
            fixed = fixed.expand(batch, -1)  # one condition vector for every sample
        elif fixed.shape[0] != batch:
            raise EbmkitError(f"the fixed condition has {fixed.shape[0]} rows but the batch has {batch} samples")
        return self.inner(x, fixed)

    @property
    def expression(self) -> str:
        value = self.shown if self.shown is not None else self.cond.tolist()
        return f"{_wrap(self.inner.expression, self.inner)}.given({value})"

    def __repr__(self) -> str:
        return self.expression


_EAGER = contextvars.ContextVar("ebmkit_eager", default=False)


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """A compiled energy (``[run].compile``: the engine's ``FastEnergy``) runs its energy uncompiled inside, for the passes the compiler does
    not serve: a graph that is differentiated twice, a functional call with parameters swapped
    in. Nothing else changes: other compiled code, a user's included, runs as it would."""
    token = _EAGER.set(True)
    try:
        yield
    finally:
        _EAGER.reset(token)


def eager_wanted() -> bool:
    """Whether the caller is inside :func:`eager`."""
    return _EAGER.get()


def energy_and_grad(energy: Energy, x: Tensor, cond: Tensor | None = None, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """E(x) (shape ``(B,)``) and ∇ₓ E(x), the gradient of each sample's own energy.

    With ``create_graph=False`` both come back detached: no graph to the energy's
    parameters is kept. With ``create_graph=True`` the gradient stays differentiable
    with respect to the parameters (and x).
    """
    with torch.enable_grad(), eager() if create_graph else contextlib.nullcontext():
        x_in = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        e = energy(x_in, cond)
        (grad,) = torch.autograd.grad(e.sum(), x_in, create_graph=create_graph)
    if not create_graph:
        return e.detach(), grad  # (a gradient taken without create_graph carries no graph)
    return e, grad


def count_models(energy: nn.Module) -> int:
    """How many models a composed energy adds up: each leaf of its sums, weights,
    disjunctions and conditions counts once per use (``a + b - a`` has 3). 1 for any other energy."""
    energy = unwrap(energy)
    if isinstance(energy, SumEnergy | DisjunctionEnergy):
        return sum(count_models(term) for term in energy.terms)
    if isinstance(energy, ScaledEnergy | ConditionedEnergy):
        return count_models(energy.inner)
    return 1
