"""What each kind of component is: the interfaces plugins implement.

These are structural (``typing.Protocol``): a component needs the methods and attributes
below, not a base class. Only energies share a base class, :class:`ebmkit.Energy`, because
every energy must support the algebra. A built component is checked against its kind's
protocol when a recipe is validated, so a factory that returns the wrong thing is reported
with its TOML path, not deep inside a run.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import torch

from ebmkit._host.errors import EbmkitError

if TYPE_CHECKING:
    from ebmkit._host.energy import Energy

Tensor = torch.Tensor


# -- state ------------------------------------------------------------------------------------
@runtime_checkable
class Stateful(Protocol):
    """A component whose state changes during a run (a replay buffer, a schedule).

    The run saves ``state_dict()`` with the rest of its state, under the component's TOML
    path, and gives it back through ``load_state_dict``: a plugin's state is saved without
    any code in the core. Values may be tensors or plain Python values.
    """

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# -- energies ---------------------------------------------------------------------------------
@runtime_checkable
class MultiScale(Protocol):
    """An energy made of several scales whose sum is the energy.

    ``energy(x, cond, per_scale=True)`` returns the scales apart, shape ``(B, num_scales)``;
    ``energy(x, cond)`` returns their sum. Passing ``per_scale`` through the call (not a
    separate method) keeps it working when the energy is wrapped for a device strategy:
    use :func:`scale_energies`, which finds the protocol under wrappers.
    """

    num_scales: int


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module under device-strategy wrappers: DistributedDataParallel and DataParallel
    (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        # both wrappers hold the module as a submodule; reading _modules directly spares the
        # exception nn.Module.__getattr__ raises for a missing name (most energies), every call
        children = getattr(module, "_modules", None) or {}
        inner = children.get("module")
        if not isinstance(inner, torch.nn.Module):
            inner = children.get("_orig_mod")
        if not isinstance(inner, torch.nn.Module):
            return module
        module = inner


def is_multiscale(energy: torch.nn.Module) -> bool:
    """Whether ``energy`` (or the energy under its wrappers) follows :class:`ebmkit.MultiScale`."""
    # What isinstance(·, MultiScale) checks, the attribute, looked up on the class and in the
    # instance: typing's protocol check costs ~40 µs a call, and hasattr on a module that lacks
    # it raises inside nn.Module.__getattr__.
    inner = unwrap(energy)
    return hasattr(type(inner), "num_scales") or "num_scales" in getattr(inner, "__dict__", {})


def scale_energies(energy: torch.nn.Module, x: Tensor, cond: Tensor | None = None) -> Tensor:
    """E(x) by scale, shape ``(B, S)``: a multi-scale energy's scales, or ``(B, 1)`` for any other.

    The call goes through ``energy`` itself, wrappers included, so a device strategy's
    hooks (gradient synchronisation) still see it.
    """
    return _as_scales(own_energies(energy, x, cond))


def own_energies(energy: torch.nn.Module, x: Tensor, cond: Tensor | None = None) -> Tensor:
    """E(x) as the energy gives it: its scales apart, ``(B, S)``, for a multi-scale energy; else ``(B,)``."""
    return energy(x, cond, per_scale=True) if is_multiscale(energy) else energy(x, cond)


def _as_scales(energies: Tensor) -> Tensor:
    return energies if energies.dim() == 2 else energies.unsqueeze(1)


# -- transitions and samplers -----------------------------------------------------------------
_DIAGNOSTICS = contextvars.ContextVar("ebmkit_diagnostics", default=True)


class diagnostics:  # noqa: N801 (used as a function: ``with ebmkit.diagnostics(False):``)
    """Whether samplers' per-step statistics are wanted inside the block (they are outside it):
    the default of :attr:`StepContext.diagnostics`. The training loop turns them off on the
    updates it does not log, where nothing reads them; a transition may then skip the work
    they cost (Langevin's gradient norm, Gibbs's energy pass)."""

    # A class rather than a generator-based context manager: the loop enters one every update.
    def __init__(self, wanted: bool):
        self.wanted = wanted

    def __enter__(self) -> None:
        self._token = _DIAGNOSTICS.set(self.wanted)

    def __exit__(self, *exc: object) -> None:
        _DIAGNOSTICS.reset(self._token)


@attrs.frozen
class StepContext:
    """Where a transition step stands within a sampler run.

    :ivar index: the step number, from 0.
    :ivar total: how many steps the sampler takes in all.
    :ivar cond: the condition labels of the chains, or None.
    :ivar create_graph: keep the autograd graph of this step, so that the returned
        samples are differentiable with respect to the energy's parameters.
    :ivar diagnostics: whether the caller reads the step's ``stats``; when False a
        transition may leave out those that cost extra work (see :func:`ebmkit.diagnostics`).
    """

    index: int
    total: int
    cond: Tensor | None = None
    create_graph: bool = False
    diagnostics: bool = attrs.field(factory=_DIAGNOSTICS.get)


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
    """One step of a Markov kernel (or another map of a batch of chains).

    A transition that does not look at the energy (data augmentation) may be called with
    ``energy=None``, e.g. by a buffer that transforms what it draws.

    With ``ctx.create_graph`` the returned ``x`` must stay differentiable with respect to the
    energy's parameters (losses such as the improved-CD KL term differentiate through it). A
    transition that cannot keep that graph (Gibbs sampling draws discrete states) says so with
    a class attribute ``differentiable = False``; samplers then report that they keep no graph.
    """

    def step(self, energy: Energy | None, x: Tensor, ctx: StepContext) -> StepResult: ...


@attrs.define
class SampleResult:
    """What a sampler returns.

    :ivar x: the final samples, detached from any graph.
    :ivar trace: per-step means of the transitions' diagnostics, e.g.
        ``trace["energy"][k]`` is the mean energy after step k: a 1-D tensor, which may stay on
        the sampler's device (the loop reads it only when it logs), or a list of floats.
    :ivar x_graph: when ``keep_graph = k`` was asked: the samples again, with the autograd
        graph of the last k steps (from a detached start) kept, so they are differentiable
        with respect to the energy's parameters through those steps; ``x_graph.detach()``
        equals ``x``. Otherwise None.
    """

    x: Tensor
    trace: dict[str, Tensor | list[float]] = attrs.field(factory=dict)
    x_graph: Tensor | None = None


@runtime_checkable
class Sampler(Protocol):
    """Draws samples from an energy, starting from ``x0``.

    ``keep_graph = k`` asks for the graph of the last k steps in ``SampleResult.x_graph``;
    a sampler declares the most it can keep as ``max_graph_steps`` (0 when absent), and a
    recipe whose losses ask for more is rejected at validation.
    """

    def sample(self, energy: Energy, x0: Tensor, *, cond: Tensor | None = None, keep_graph: int = 0) -> SampleResult: ...


def max_graph_steps(sampler: Any) -> int:
    """How many final steps ``sampler`` can keep the graph of (its optional ``max_graph_steps``)."""
    return int(getattr(sampler, "max_graph_steps", 0))


# -- buffers ----------------------------------------------------------------------------------
@runtime_checkable
class Buffer(Protocol):
    """Where chains start, and what is kept of them between training iterations.

    A buffer with changing state also follows :class:`Stateful`.
    """

    def draw(self, n: int, data: Tensor) -> Tensor:
        """Return ``n`` chain starts. ``data`` is the current positive batch in training (CD-k
        buffers start chains there); outside training, any batch of the right shape, device and dtype."""

    def push(self, x: Tensor) -> None:
        """Offer the chains' final samples to the buffer (after the update of each iteration)."""

    def __len__(self) -> int:
        """How many samples the buffer holds."""


@runtime_checkable
class ReferenceSet(Protocol):
    """A buffer that hands out earlier samples, e.g. as the reference set of an entropy estimate.

    A buffer that follows it registers with ``provides=("reference_set",)``, so that a loss
    registered with ``requires=("reference_set",)`` is checked against it at validation; the
    loop then passes it to losses as ``batch.reference_set``.
    """

    def reference_samples(self, n: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``n`` stored samples, drawn uniformly with replacement."""

    def __len__(self) -> int:
        """How many samples are stored."""


# -- losses -----------------------------------------------------------------------------------
@attrs.frozen
class Needs:
    """What a loss term needs the training loop to produce.

    :ivar negatives: samples from the model (the sampler is run for them). When no term
        of a recipe needs them, the loop does not run the sampler.
    :ivar graph_steps: the autograd graph of the sampler's last k steps (``batch.x_neg_graph``),
        for terms that differentiate through the sampler; 0 for none.
    :ivar conditional: on labelled data, sample the negatives given the batch's labels (the
        default); False samples them from the marginal, ``cond=None`` (JEM's generative term).
        The terms of one recipe that need negatives must agree.
    """

    negatives: bool = True
    graph_steps: int = 0
    conditional: bool = True


def needs_of(loss: Any) -> Needs:
    """A loss term's :class:`Needs` (its optional ``needs`` attribute; negatives only when absent)."""
    return getattr(loss, "needs", None) or Needs()


@attrs.define
class TrainBatch:
    """Everything a loss term sees in one training iteration.

    The energies of the positive and negative samples are computed once, on first use, and
    shared by every term. ``e_pos`` is E(x+), shape ``(B,)``; ``e_pos_scales`` holds each
    scale of a multi-scale energy apart, shape ``(B, S)`` (S = 1 for any other energy);
    ``e_pos_mean`` is their mean over the batch and the scales, the number contrastive
    divergence minimises and the loop logs as ``e_pos``. The same for ``e_neg``.

    :ivar x_neg: the sampler's samples (detached), or None when no term needs negatives.
    :ivar x_neg_graph: the samples with the graph of the sampler's last k steps, when a term's
        ``needs.graph_steps`` asked for it; otherwise None.
    :ivar reference_set: the recipe's buffer when it keeps earlier samples for losses (a
        :class:`ReferenceSet`), otherwise None.
    """

    energy: Energy
    x_pos: Tensor
    cond: Tensor | None = None
    x_neg: Tensor | None = None
    x_neg_graph: Tensor | None = None
    reference_set: ReferenceSet | None = None
    #: whether ``x_neg`` was sampled given ``cond`` (then ``e_neg`` is E(x-, cond)); else E(x-)
    conditional_negatives: bool = True
    _cache: dict[str, Tensor] = attrs.field(factory=dict, repr=False)

    def _energies(self, side: str) -> Tensor:
        """The energy's own output for one side: ``(B, S)`` for a multi-scale energy, else ``(B,)``
        (kept as it comes: a view to ``(B, 1)`` would cost an op forward and one backward)."""
        if side not in self._cache:
            if side == "pos":
                x, cond = self.x_pos, self.cond
            else:
                if self.x_neg is None:
                    raise EbmkitError(
                        "a loss term asked for the negative samples' energies, but no term of this recipe needs negatives "
                        "(each declares needs.negatives = False), so the sampler was not run"
                    )
                x = self.x_neg.detach() if self.x_neg.requires_grad else self.x_neg  # (a sampler's x is detached already)
                cond = self.cond if self.conditional_negatives else None
            self._cache[side] = own_energies(self.energy, x, cond)
        return self._cache[side]

    def _derived(self, key: str, side: str, make: Callable[[Tensor], Tensor]) -> Tensor:
        if key not in self._cache:
            self._cache[key] = make(self._energies(side))
        return self._cache[key]

    def release_graph(self) -> None:
        """Forget the sampler's graph and every energy computed so far, once the terms that
        differentiate through the sampler have run backward (their graphs are spent): a term
        that asks again gets them computed afresh, and ``x_neg_graph`` is None."""
        self.x_neg_graph = None
        self._cache.clear()

    @property
    def e_pos_scales(self) -> Tensor:
        return self._derived("pos_scales", "pos", _as_scales)

    @property
    def e_neg_scales(self) -> Tensor:
        return self._derived("neg_scales", "neg", _as_scales)

    @property
    def e_pos(self) -> Tensor:
        return self._derived("pos_sum", "pos", _summed)

    @property
    def e_neg(self) -> Tensor:
        return self._derived("neg_sum", "neg", _summed)

    @property
    def e_pos_mean(self) -> Tensor:
        return self._derived("pos_mean", "pos", torch.mean)

    @property
    def e_neg_mean(self) -> Tensor:
        return self._derived("neg_mean", "neg", torch.mean)


def _summed(energies: Tensor) -> Tensor:
    return energies.sum(1) if energies.dim() == 2 else energies


@attrs.define
class LossOutput:
    """A loss term's value (a scalar to minimise) and what it wants logged.

    Metrics may be floats or 0-d tensors; give tensors (detached) rather than ``float(t)``, which
    waits for the device on every update: the loop reads them only when it logs.
    """

    value: Tensor
    metrics: dict[str, float | Tensor] = attrs.field(factory=dict)


@runtime_checkable
class Loss(Protocol):
    """A loss term: ``loss(batch) -> LossOutput``. An optional ``needs`` attribute (a
    :class:`Needs`) says what the loop must produce for it; by default, negatives only."""

    def __call__(self, batch: TrainBatch) -> LossOutput: ...


# -- evaluators and datasets ------------------------------------------------------------------
@attrs.define
class EvalContext:
    """What an evaluator gets: the model, the data, the run's sampler, and where to write.

    :ivar energy: the EMA weights when the recipe keeps an EMA, else the trained energy.
    :ivar noise: ``noise(n)`` draws fresh chain starts from the data's domain.
    :ivar samples: samples already drawn (``ebmkit compose`` draws them once for every
        evaluator); an evaluator that scores samples scores these instead of drawing its own.
    :ivar requirement: what each of ``samples`` should carry, read from a composition's
        expression (:func:`ebmkit._model.expression.requirement`), e.g. ``color=red and shape=circle``;
        it has ``holds(labels)`` with ``labels`` mapping attribute -> class name per sample.

    An evaluator returns numbers, and may return text too (a ``"protocol"`` line saying how the
    numbers were made): text is written to ``metrics.jsonl`` and shown, never plotted.
    """

    energy: Energy
    dataset: Dataset
    sampler: Sampler
    noise: Callable[[int], Tensor]
    out_dir: Path
    step: int
    device: torch.device
    buffer: Buffer | None = None
    samples: Tensor | None = None
    requirement: Any = None
    cache_dir: Path | None = None
    #: whether ``energy`` holds EMA weights (None: not known); protocols state it
    ema: bool | None = None

    @property
    def cache(self) -> Path:
        """Where an evaluator keeps what it can reuse (a trained classifier): the run folder's
        ``cache/``, or for ``ebmkit compose`` the first model's."""
        return self.cache_dir if self.cache_dir is not None else Path(self.out_dir) / "cache"


@runtime_checkable
class Evaluator(Protocol):
    """Computes metrics and writes files (plots, sample grids) for a model."""

    def evaluate(self, ctx: EvalContext) -> dict[str, float | str]: ...


@attrs.frozen
class Conditioning:
    """What the labels of a conditional dataset mean: the attribute they give, and the name of
    each label index (``classes[i]`` names label ``i``).

    A checkpoint records it, so a loaded energy is conditioned by name:
    ``E.given("red")`` or ``E.given(color="red")``. A yes/no attribute (:meth:`flag`) names
    its labels ``not_<attribute>`` and ``<attribute>`` and also takes ``given(Smiling=True)``.
    """

    attribute: str
    classes: tuple[str, ...] = attrs.field(converter=tuple)

    @classmethod
    def flag(cls, attribute: str) -> Conditioning:
        """A yes/no attribute: label 0 = ``not_<attribute>``, label 1 = ``<attribute>``."""
        return cls(attribute, (f"not_{attribute}", attribute))

    @property
    def is_flag(self) -> bool:
        return self.classes == (f"not_{self.attribute}", self.attribute)

    def index(self, value: str | bool) -> int:
        """The label index of a class name (or, for a yes/no attribute, of True/False)."""
        if isinstance(value, bool) and self.is_flag:
            return int(value)
        if isinstance(value, str) and value in self.classes:
            return self.classes.index(value)
        from ebmkit._host.errors import did_you_mean_hint

        hint = did_you_mean_hint(str(value), self.classes) if isinstance(value, str) else ""
        flags = " (or True/False)" if self.is_flag else ""
        raise EbmkitError(
            f"{self.attribute} has no class {value!r}{hint}\n classes of {self.attribute}: {', '.join(self.classes)}{flags}"
        )

    def to_record(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "classes": list(self.classes)}

    @classmethod
    def from_record(cls, record: Any) -> Conditioning | None:
        if record is None:
            return None
        return cls(str(record["attribute"]), tuple(str(c) for c in record["classes"]))


@runtime_checkable
class Dataset(Protocol):
    """A map-style dataset of samples, or ``(sample, label)`` pairs.

    :ivar sample_shape: the shape of one sample.
    :ivar domain: ``(low, high)`` bounds of the data, used to draw fresh chain starts
        uniformly; None means a standard normal.
    :ivar num_classes: the number of labels, or None for unlabelled data.

    A labelled dataset may also say what its labels mean with a ``conditioning`` attribute
    (a :class:`Conditioning`); a model trained on it can then be conditioned by name.

    A dataset may also define ``read_batch(indices)``: given a 1-D ``LongTensor`` of indices,
    the samples at them stacked into one tensor and their labels (a ``LongTensor``, or None
    for unlabelled data), equal to stacking ``dataset[i]`` in that order, random draws
    included. ebmkit then reads each batch in one call instead of one per sample.

    The factory that builds it may have ``declared(**params)``: ``(sample_shape, domain,
    num_classes)`` without reading any data, for ``ebmkit validate --no-data``.
    """

    sample_shape: tuple[int, ...]
    domain: tuple[float, float] | None
    num_classes: int | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...
