"""What each kind of component is: the interfaces plugins implement.

These are structural (``typing.Protocol``): a component needs the methods and
attributes below, not a base class. Only energies share a base class,
:class:`ebmkit.Energy`, because every energy must support the algebra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import torch

from ebmkit.errors import EbmkitError

if TYPE_CHECKING:
    from ebmkit.energy import Energy

Tensor = torch.Tensor


@attrs.frozen
class StepContext:
    """Where a transition step stands within a sampler run.

    :ivar index: the step number, from 0.
    :ivar total: how many steps the sampler takes in all.
    :ivar cond: the condition labels of the chains, or None.
    :ivar create_graph: keep the autograd graph of this step, so that the returned
        samples are differentiable with respect to the energy's parameters.
    """

    index: int
    total: int
    cond: Tensor | None = None
    create_graph: bool = False


@attrs.define
class StepResult:
    """The outcome of one transition step.

    :ivar x: the new state of the chains.
    :ivar stats: per-chain diagnostics of this step, each of shape ``(B,)``, e.g.
        ``energy``, ``grad_norm``, ``accept``.
    """

    x: Tensor
    stats: dict[str, Tensor] = attrs.field(factory=dict)


@runtime_checkable
class Transition(Protocol):
    """One step of a Markov kernel (or another map of a batch of chains)."""

    def step(self, energy: Energy, x: Tensor, ctx: StepContext) -> StepResult: ...


@attrs.frozen
class Scheduled:
    """A transition as a recipe schedules it: run it after every ``every``-th step."""

    transition: Transition
    every: int = 1
    name: str = ""


@attrs.define
class SampleResult:
    """What a sampler returns.

    :ivar x: the final samples, detached from any graph.
    :ivar trace: per-step means of the transitions' diagnostics, e.g.
        ``trace["energy"][k]`` is the mean energy after step k.
    :ivar x_graph: when ``keep_last_graph`` was asked (True, or a number k of steps): the last
        k steps redone from the same state with the same random numbers, with their autograd
        graph kept (differentiable with respect to the energy's parameters); otherwise None.
    """

    x: Tensor
    trace: dict[str, list[float]] = attrs.field(factory=dict)
    x_graph: Tensor | None = None


@runtime_checkable
class Sampler(Protocol):
    """Draws samples from an energy, starting from ``x0``."""

    def sample(
        self, energy: Energy, x0: Tensor, *, cond: Tensor | None = None, keep_last_graph: bool | int = False
    ) -> SampleResult: ...


@runtime_checkable
class Buffer(Protocol):
    """Where chains start, and what is kept of them between training iterations."""

    def draw(self, n: int, data: Tensor) -> Tensor:
        """Return ``n`` chain starts; ``data`` is the current positive batch."""

    def push(self, x: Tensor) -> None:
        """Offer the chains' final samples to the buffer."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@attrs.define
class TrainBatch:
    """Everything a loss term sees in one training iteration.

    The energies of the positive and negative samples are computed once, on first use,
    and shared by every loss term. For a multi-scale energy (one with ``per_scale(x, cond)``
    returning shape (B, S), and ``num_scales`` = S), ``e_pos_scales`` holds each scale and ``e_pos`` their mean over
    scales, as the Improved-CD reference averages scales in its loss; for an ordinary energy
    S = 1 and ``e_pos`` is E(x+). ``e_pos_total`` is E(x+) itself (the sum over scales), the
    energy that defines the model density.

    ``x_neg`` and ``sample`` are None when no loss term of the recipe needs negative samples
    (every term has ``needs_samples = False``, e.g. the MCMC-free DCD estimator): the runner
    then does not run the sampler at all.
    """

    energy: Energy
    x_pos: Tensor
    x_neg: Tensor | None
    cond: Tensor | None
    sample: SampleResult | None
    buffer: Buffer | None
    _cache: dict[str, Tensor] = attrs.field(factory=dict, repr=False)

    def _scales(self, key: str, x: Tensor) -> Tensor:
        if key not in self._cache:
            per_scale = getattr(self.energy, "per_scale", None)
            self._cache[key] = per_scale(x, self.cond) if per_scale else self.energy(x, self.cond)[:, None]
        return self._cache[key]

    @property
    def e_pos_scales(self) -> Tensor:
        return self._scales("pos", self.x_pos)

    @property
    def e_neg_scales(self) -> Tensor:
        if self.x_neg is None:
            raise EbmkitError(
                "a loss term asked for the negative samples' energies, but no term of this recipe asks the sampler "
                "for samples (each has needs_samples = False)"
            )
        return self._scales("neg", self.x_neg.detach())

    @property
    def e_pos_total(self) -> Tensor:
        return self.e_pos_scales.sum(1)

    @property
    def e_pos(self) -> Tensor:
        return self.e_pos_scales.mean(1)

    @property
    def e_neg(self) -> Tensor:
        return self.e_neg_scales.mean(1)


@attrs.define
class LossOutput:
    """A loss term's value (a scalar to minimise) and what it wants logged."""

    value: Tensor
    metrics: dict[str, float] = attrs.field(factory=dict)


@runtime_checkable
class Loss(Protocol):
    """A loss term. ``needs_graph`` (a bool, or a number of steps k) asks the sampler to keep
    the graph of its last k steps in ``batch.sample.x_graph``.

    An optional ``needs_samples`` attribute (True when absent) says whether the term uses the
    sampler's negative samples; when no term of a recipe does, the runner skips the sampler.
    """

    needs_graph: bool | int

    def __call__(self, energy: Energy, batch: TrainBatch) -> LossOutput: ...


@attrs.define
class EvalContext:
    """What an evaluator gets: the model, the data, a sampler, and where to write."""

    energy: Energy
    dataset: Dataset
    sampler: Sampler
    noise: Callable[[int], Tensor]
    out_dir: Path
    step: int
    device: torch.device
    buffer: Buffer | None = None


@runtime_checkable
class Evaluator(Protocol):
    """Computes metrics and writes files (plots, sample grids) for a model."""

    def evaluate(self, ctx: EvalContext) -> dict[str, float]: ...


@runtime_checkable
class Dataset(Protocol):
    """A map-style dataset of samples, or ``(sample, label)`` pairs.

    :ivar sample_shape: the shape of one sample.
    :ivar domain: ``(low, high)`` bounds of the data, used to draw fresh chain starts
        uniformly; None means a standard normal.
    :ivar num_classes: the number of labels, or None for unlabelled data.
    """

    sample_shape: tuple[int, ...]
    domain: tuple[float, float] | None
    num_classes: int | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...
