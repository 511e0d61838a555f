"""The contract of each kind of component, as checks a test runs.

:func:`check_component` builds a registered component by name (its parameters checked as in a
recipe) and runs the checks of its kind; :func:`check` does the same for any zero-argument
``build`` callable. Both raise :class:`ContractViolation` listing every broken point, and
return the names of the checks that ran. The pytest plugin's ``ebmkit_contract`` fixture
(:mod:`ebmkit._testkit.pytest_plugin`) calls them.

What is checked, for every kind:

- **shapes**: what the component returns has the shape, dtype and device its protocol says;
- **detaching**: samples come back without an autograd graph unless one was asked for
  (``StepContext.create_graph``, ``keep_graph``), and then the graph reaches the energy's
  parameters; inputs are not changed in place;
- **determinism under a seed**: built and run twice under the same seed, it gives the same
  result;
- **state round trip**: a :class:`~ebmkit.Stateful` component's ``state_dict``
  loaded into a fresh one gives the same behaviour (an energy's or optimizer's too).

A component is checked against small stand-ins for what it works with (a quadratic bowl
energy, Gaussian points, a gradient-descent sampler), or against the ones given: an RBM
Gibbs transition needs an RBM energy, image transitions need image data.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ebmkit._host import checked
from ebmkit._host.energy import Energy, energy_and_grad
from ebmkit._host.data import stack_items
from ebmkit._host.kinds import kind_named
from ebmkit._host.protocols import (
    EvalContext,
    LossOutput,
    ReferenceSet,
    SampleResult,
    Stateful,
    StepContext,
    TrainBatch,
    max_graph_steps,
    needs_of,
)

Tensor = torch.Tensor


class ContractViolation(AssertionError):
    """A component broke its kind's contract; the message lists each broken point."""

    def __init__(self, what: str, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"{what} breaks its contract:\n" + "\n".join(f" - {p}" for p in self.problems))


# -- stand-ins for what a component works with ------------------------------------------------
class Bowl(Energy):
    """E(x) = ½‖(x − μ_y) · exp(s)‖² per sample: a learnable quadratic bowl (one centre per class)."""

    def __init__(self, data_shape: Sequence[int], num_classes: int | None = None):
        super().__init__()
        self.centre = torch.nn.Parameter(0.1 * torch.randn(num_classes or 1, *data_shape))
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        centre = self.centre[cond] if cond is not None else self.centre[0]
        return 0.5 * ((x - centre) * self.log_scale.exp()).flatten(1).pow(2).sum(1)


class Points(torch.utils.data.Dataset):
    """Standard normal points of ``sample_shape`` (labelled ``i % num_classes`` when it has classes)."""

    def __init__(self, sample_shape: Sequence[int] = (2,), size: int = 64, num_classes: int | None = None, seed: int = 0):
        self.sample_shape, self.domain, self.num_classes = tuple(sample_shape), None, num_classes
        self.points = torch.randn(size, *self.sample_shape, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Any:
        return (self.points[index], index % self.num_classes) if self.num_classes else self.points[index]


class GradientSteps:
    """A sampler stand-in: ``steps`` noisy gradient-descent steps on the energy, keeping the graph
    of the last ``keep_graph`` of them."""

    max_graph_steps = 2

    def __init__(self, steps: int = 2, step_size: float = 0.05, noise_std: float = 0.01):
        self.steps, self.step_size, self.noise_std = steps, step_size, noise_std

    def sample(self, energy: Energy, x0: Tensor, *, cond: Tensor | None = None, keep_graph: int = 0) -> SampleResult:
        x = x0.detach()
        for index in range(self.steps):
            graph = index >= self.steps - keep_graph
            _, grad = energy_and_grad(energy, x, cond, create_graph=graph)
            x = x - self.step_size * grad + self.noise_std * torch.randn_like(x)
            if not graph:
                x = x.detach()
        return SampleResult(x.detach(), {}, x if keep_graph else None)


class Samples:
    """A reference-set stand-in holding the given samples."""

    def __init__(self, samples: Tensor):
        self.samples = samples

    def reference_samples(self, n: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
        index = torch.randint(len(self.samples), (n,))
        return self.samples[index].to(device=device, dtype=dtype)

    def __len__(self) -> int:
        return len(self.samples)


# -- the setting a component is checked in ----------------------------------------------------
class Setting:
    """What a component is checked against: data, an energy, a sampler, chain starts."""

    def __init__(self, dataset: Any = None, energy: Energy | None = None, sampler: Any = None, batch_size: int = 4,
                 out_dir: Path | None = None):
        self.dataset = dataset if dataset is not None else Points()
        self.shape = tuple(self.dataset.sample_shape)
        self.num_classes = getattr(self.dataset, "num_classes", None)
        self.energy = energy if energy is not None else Bowl(self.shape, self.num_classes)
        self.sampler = sampler if sampler is not None else GradientSteps()
        self.batch_size = batch_size
        self.out_dir = out_dir
        low_high = getattr(self.dataset, "domain", None)
        self.domain = tuple(low_high) if low_high is not None else None

    def noise(self, n: int) -> Tensor:
        if self.domain is None:
            return torch.randn(n, *self.shape)
        low, high = self.domain
        return torch.rand(n, *self.shape) * (high - low) + low

    def batch(self) -> tuple[Tensor, Tensor | None]:
        items = [self.dataset[i] for i in range(self.batch_size)]
        if isinstance(items[0], (tuple, list)):
            return torch.stack([torch.as_tensor(x) for x, _ in items]).float(), torch.tensor([int(y) for _, y in items])
        return torch.stack([torch.as_tensor(x) for x in items]).float(), None

    def context(self, kind: str) -> dict[str, Any]:
        """The context keywords a factory of ``kind`` may take."""
        return {"data_shape": self.shape, "num_classes": self.num_classes, "noise": self.noise,
                "params": list(self.energy.parameters())}


# -- helpers ----------------------------------------------------------------------------------
def _seeded(seed: int, fn: Callable[[], Any]) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and torch.equal(a.detach(), b.detach())
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _param_grads(energy: Energy, value: Tensor) -> list[Tensor] | None:
    params = [p for p in energy.parameters() if p.requires_grad]
    if not params:
        return None
    grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=True)
    return [g for g in grads if g is not None]


def _grad_problem(energy: Energy, value: Tensor, what: str) -> str | None:
    if not value.requires_grad:
        return f"{what} has no autograd graph to the energy's parameters"
    grads = _param_grads(energy, value)
    if grads is None:
        return None
    if not grads or all(bool((g == 0).all()) for g in grads):
        return f"{what} does not depend on the energy's parameters (every gradient is zero or missing)"
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return f"{what} has a non-finite gradient with respect to the energy's parameters"
    return None


def _round_trip(build: Callable[[], Any], prepare: Callable[[Any], None], observe: Callable[[Any], Any], seed: int) -> str | None:
    """Build one, ``prepare`` it (change its state), copy its state into a fresh one built under
    another seed, and compare what ``observe`` sees of both under the same seed."""
    first = _seeded(seed, build)
    _seeded(seed + 1, lambda: prepare(first))
    second = _seeded(seed + 7, build)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    a, b = _seeded(seed + 2, lambda: observe(first)), _seeded(seed + 2, lambda: observe(second))
    return None if _same(a, b) else "a fresh one given its state_dict() behaves differently (state is kept outside state_dict)"


def _stats_problems(stats: Any, batch: int, what: str) -> list[str]:
    if not isinstance(stats, dict):
        return [f"{what} stats is a {type(stats).__name__}, not a dict of per-chain tensors"]
    return [f"{what} stats[{k!r}] should be a tensor of shape ({batch},), got "
            f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}"
            for k, v in stats.items() if not (isinstance(v, Tensor) and tuple(v.shape) == (batch,))]


# -- the checks, one per kind -----------------------------------------------------------------
def _energy(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], []
    energy = _seeded(seed, build)
    x, cond = setting.batch()
    x_before = x.clone()
    e = energy(x, cond)
    ran.append("shapes")
    if not (isinstance(e, Tensor) and e.shape == (x.shape[0],) and e.is_floating_point()):
        return [f"energy(x) should be a float tensor of shape ({x.shape[0]},), got {e!r}"], ran
    if not bool(torch.isfinite(e).all()):
        problems.append("energy(x) is not finite on data")
    try:
        alone = energy(x[:1], None if cond is None else cond[:1])
    except Exception as exc:  # batch statistics fail on one sample
        problems.append(f"a sample's energy depends on the rest of the batch (one sample alone fails: {exc})")
    else:
        if not torch.allclose(alone, e[:1], rtol=1e-4, atol=1e-5):
            problems.append("a sample's energy depends on the rest of the batch (energy(x[:1]) != energy(x)[:1])")
    ran.append("gradients")
    _, grad = energy_and_grad(energy, x, cond)
    if grad.shape != x.shape or not bool(torch.isfinite(grad).all()):
        problems.append("the input gradient is not finite or not shaped like x")
    problem = _grad_problem(energy, energy(x, cond).sum(), "energy(x)")
    if problem:
        problems.append(problem)
    if not torch.equal(x, x_before):
        problems.append("energy(x) changed x in place")
    ran.append("determinism")
    if not _same(e, energy(x, cond)):
        problems.append("two calls on the same input give different energies")
    again = _seeded(seed, build)
    if not _same(e, again(x, cond)):
        problems.append("built twice under the same seed, it gives different energies")
    ran.append("state_dict round trip")
    problem = _round_trip(build, lambda _: None, lambda m: m(x, cond).detach(), seed)
    if problem:
        problems.append(problem)
    return problems, ran


def _transition(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], []
    energy = setting.energy
    x0, cond = setting.noise(setting.batch_size), setting.batch()[1]
    x_before = x0.clone()

    def run(transition: Any, create_graph: bool = False, on: Energy | None = energy) -> Any:
        return checked.step(transition, on, x0, StepContext(index=0, total=2, cond=cond, create_graph=create_graph))

    transition = _seeded(seed, build)
    ran.append("shapes")
    result = _seeded(seed, lambda: run(transition))
    if result.x.dtype != x0.dtype or result.x.device != x0.device:
        problems.append(f"step() changed the dtype or device ({result.x.dtype}, {result.x.device})")
    problems += _stats_problems(result.stats, x0.shape[0], "step()")
    ran.append("detaching")
    if result.x.requires_grad:
        problems.append("step() returned x with an autograd graph although ctx.create_graph is False")
    if not torch.equal(x0, x_before):
        problems.append("step() changed its input x in place")
    try:
        _seeded(seed, lambda: run(transition, on=None))
        needs_energy = False
    except Exception:  # a transition that looks at the energy cannot step without one
        needs_energy = True
    if needs_energy and getattr(transition, "differentiable", True):
        graph = _seeded(seed, lambda: run(transition, create_graph=True))
        problem = _grad_problem(energy, graph.x.sum(), "step() with ctx.create_graph=True")
        if problem:
            problems.append(problem)
        elif not torch.allclose(graph.x.detach(), result.x, rtol=1e-5, atol=1e-6):
            problems.append("step() gives other samples with ctx.create_graph=True than without (same seed)")
    ran.append("determinism")
    if not _same(result.x, _seeded(seed, lambda: run(_seeded(seed, build))).x):
        problems.append("under the same seed, two steps from the same start differ")
    if isinstance(transition, Stateful):
        ran.append("state_dict round trip")
        problem = _round_trip(build, lambda t: run(t), lambda t: run(t).x, seed)
        if problem:
            problems.append(problem)
    return problems, ran


def _sampler(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], []
    energy = setting.energy
    x0, cond = setting.noise(setting.batch_size), setting.batch()[1]
    x_before = x0.clone()

    def run(sampler: Any, keep_graph: int = 0) -> SampleResult:
        return checked.sample(sampler, energy, x0, cond=cond, keep_graph=keep_graph)

    sampler = _seeded(seed, build)
    ran.append("shapes")
    result = _seeded(seed, lambda: run(sampler))
    for key, values in result.trace.items():
        if not (isinstance(values, list) or (isinstance(values, Tensor) and values.dim() == 1)):
            problems.append(f"trace[{key!r}] should be a 1-D tensor or a list, got {type(values).__name__}")
    ran.append("detaching")
    if result.x.requires_grad:
        problems.append("sample() returned x with an autograd graph")
    if result.x_graph is not None:
        problems.append("sample() returned x_graph although keep_graph=0")
    if not torch.equal(x0, x_before):
        problems.append("sample() changed x0 in place")
    k = min(max_graph_steps(sampler), 2)
    if k:
        graph = _seeded(seed, lambda: run(sampler, keep_graph=k))
        problem = _grad_problem(energy, graph.x_graph.sum(), f"x_graph with keep_graph={k}")
        if problem:
            problems.append(problem)
        if not torch.allclose(graph.x_graph.detach(), graph.x, rtol=1e-5, atol=1e-6):
            problems.append("x_graph.detach() differs from x")
        if not torch.allclose(graph.x, result.x, rtol=1e-5, atol=1e-6):
            problems.append(f"keep_graph={k} gives other samples than keep_graph=0 (same seed)")
    ran.append("determinism")
    if not _same(result.x, _seeded(seed, lambda: run(_seeded(seed, build))).x):
        problems.append("under the same seed, two runs from the same starts differ")
    if isinstance(sampler, Stateful):
        ran.append("state_dict round trip")
        problem = _round_trip(build, lambda s: run(s), lambda s: run(s).x, seed)
        if problem:
            problems.append(problem)
    return problems, ran


def _buffer(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], []
    data, _ = setting.batch()
    n = data.shape[0]

    def fill(buffer: Any) -> None:
        for _ in range(3):
            buffer.push(setting.noise(n))

    buffer = _seeded(seed, build)
    ran.append("shapes")
    x = _seeded(seed, lambda: checked.draw(buffer, n, data))
    if x.dtype != data.dtype or x.device != data.device:
        problems.append(f"draw() returned dtype {x.dtype} on {x.device} for data of {data.dtype} on {data.device}")
    _seeded(seed, lambda: fill(buffer))
    if not isinstance(len(buffer), int) or len(buffer) < 0:
        problems.append("len(buffer) is not a count")
    drawn = _seeded(seed, lambda: checked.draw(buffer, n, data))
    ran.append("detaching")
    if drawn.requires_grad:
        problems.append("draw() returned samples with an autograd graph")
    if isinstance(buffer, ReferenceSet) and len(buffer):
        reference = buffer.reference_samples(3, dtype=data.dtype, device=data.device)
        if tuple(reference.shape) != (3, *data.shape[1:]):
            problems.append(f"reference_samples(3) has shape {tuple(reference.shape)}")
    ran.append("determinism")
    other = _seeded(seed, build)
    _seeded(seed, lambda: checked.draw(other, n, data))
    _seeded(seed, lambda: fill(other))
    if not _same(drawn, _seeded(seed, lambda: checked.draw(other, n, data))):
        problems.append("under the same seed, the same pushes and draws give different samples")
    if isinstance(buffer, Stateful):
        ran.append("state_dict round trip")
        problem = _round_trip(build, fill, lambda b: (len(b), checked.draw(b, n, data)), seed)
        if problem:
            problems.append(problem)
    return problems, ran


def _loss(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], []
    energy = setting.energy
    x_pos, cond = setting.batch()
    x_before = x_pos.clone()

    def batch_for(term: Any) -> TrainBatch:
        needs = needs_of(term)
        batch = TrainBatch(energy, x_pos, cond, reference_set=Samples(setting.noise(16)))
        if needs.negatives or needs.graph_steps:
            neg_cond = cond if needs.conditional else None  # as the loop samples them
            result = checked.sample(setting.sampler, energy, setting.noise(x_pos.shape[0]), cond=neg_cond, keep_graph=needs.graph_steps)
            batch.x_neg, batch.x_neg_graph, batch.conditional_negatives = result.x, result.x_graph, needs.conditional
        return batch

    def value(term: Any) -> LossOutput:
        return checked.loss(term, batch_for(term))

    term = _seeded(seed, build)
    ran.append("shapes")
    needs = needs_of(term)
    if needs.graph_steps > max_graph_steps(setting.sampler):
        return [f"needs.graph_steps = {needs.graph_steps} is more than the checking sampler keeps; give a sampler"], ran
    out = _seeded(seed, lambda: value(term))
    if not bool(torch.isfinite(out.value)):
        problems.append("the loss value is not finite")
    for key, metric in out.metrics.items():
        if isinstance(metric, Tensor):
            if metric.dim() != 0:
                problems.append(f"metric {key!r} should be a number or a 0-d tensor, got shape {tuple(metric.shape)}")
            elif metric.requires_grad:
                problems.append(f"metric {key!r} keeps an autograd graph (detach it)")
        elif not isinstance(metric, (int, float)):
            problems.append(f"metric {key!r} is a {type(metric).__name__}, not a number")
    ran.append("gradients")
    problem = _grad_problem(energy, out.value, "the loss")
    if problem:
        problems.append(problem)
    ran.append("detaching")
    if not torch.equal(x_pos, x_before):
        problems.append("the loss changed batch.x_pos in place")
    ran.append("determinism")
    if not _same(out.value, _seeded(seed, lambda: value(_seeded(seed, build))).value):
        problems.append("under the same seed, the loss of the same batch differs")
    if isinstance(term, Stateful):
        ran.append("state_dict round trip")
        problem = _round_trip(build, lambda t: value(t), lambda t: value(t).value.detach(), seed)
        if problem:
            problems.append(problem)
    return problems, ran


def _optimizer(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], ["shapes", "determinism", "state_dict round trip"]
    x, cond = setting.batch()
    energy = setting.energy
    start = copy.deepcopy(energy.state_dict())

    def steps(optimizer: Any, n: int) -> None:
        for _ in range(n):
            optimizer.zero_grad()
            energy(x, cond).mean().backward()
            optimizer.step()

    def after(prepare: int, then: int, state: dict | None = None) -> dict:
        energy.load_state_dict(start)
        optimizer = build()
        steps(optimizer, prepare)
        if state is not None:
            energy.load_state_dict(state["weights"])
            optimizer.load_state_dict(state["optimizer"])
        snapshot = {"weights": copy.deepcopy(energy.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict())}
        steps(optimizer, then)
        return {**snapshot, "end": copy.deepcopy(energy.state_dict())}

    try:
        straight = after(2, 1)
        if _same(straight["end"], start):
            problems.append("three steps did not change the parameters")
        if not _same(straight["end"], after(2, 1)["end"]):
            problems.append("the same steps from the same start end in different parameters")
        resumed = after(0, 1, state={"weights": straight["weights"], "optimizer": straight["optimizer"]})
        if not all(torch.allclose(resumed["end"][k], straight["end"][k], rtol=1e-6, atol=1e-7) for k in start):
            problems.append("a fresh optimizer given its state_dict() takes a different step")
    finally:
        energy.load_state_dict(start)
    return problems, ran


def _dataset(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    problems, ran = [], ["shapes", "determinism"]
    dataset = _seeded(seed, build)
    if len(dataset) <= 0:
        return ["the dataset is empty"], ran
    shape, classes, domain = tuple(dataset.sample_shape), dataset.num_classes, dataset.domain
    for index in sorted({0, len(dataset) - 1, len(dataset) // 2}):
        item = _seeded(seed, lambda: dataset[index])  # noqa: B023 - called at once
        x, label = item if isinstance(item, (tuple, list)) else (item, None)
        if not isinstance(x, Tensor) or tuple(x.shape) != shape:
            problems.append(f"item {index} is {tuple(getattr(x, 'shape', ()))}, not sample_shape {shape}")
            continue
        if (label is None) != (classes is None):
            problems.append(f"item {index} {'has no label' if label is None else 'has a label'} but num_classes is {classes}")
        elif label is not None and not 0 <= int(label) < classes:
            problems.append(f"item {index}'s label {int(label)} is outside 0..{classes - 1}")
        if domain is not None and not bool(((x >= domain[0]) & (x <= domain[1])).all()):
            problems.append(f"item {index} has values outside its domain {domain}")
        if not _same(item, _seeded(seed, lambda: dataset[index])):  # noqa: B023
            problems.append(f"item {index} differs when read twice under the same seed")
    if not _same(_seeded(seed, lambda: dataset[0]), _seeded(seed, lambda: _seeded(seed, build)[0])):
        problems.append("built twice under the same seed, its first item (read under the same seed) differs")
    read_batch = getattr(dataset, "read_batch", None)
    if read_batch is not None:
        indices = [len(dataset) - 1, 0, len(dataset) // 2, 0]  # out of order, one twice
        batch = _seeded(seed, lambda: read_batch(torch.tensor(indices)))
        x, labels = stack_items(_seeded(seed, lambda: [dataset[i] for i in indices]))
        if not (isinstance(batch, tuple) and len(batch) == 2 and _same(batch[0], x) and _same(batch[1], labels)):
            problems.append(f"read_batch({indices}) is not (the items stacked, their labels) as read one by one under the same seed")
    return problems, ran


def _evaluator(build: Callable[[], Any], setting: Setting, seed: int) -> tuple[list[str], list[str]]:
    import tempfile

    problems, ran = [], ["shapes", "determinism"]

    def run(out_dir: Path) -> dict[str, Any]:
        ctx = EvalContext(setting.energy, setting.dataset, setting.sampler, setting.noise, out_dir, 0, torch.device("cpu"))
        return _seeded(seed, lambda: checked.evaluate(_seeded(seed, build), ctx))

    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        base = setting.out_dir
        folders = [Path(base) / "first", Path(base) / "second"] if base else [Path(first), Path(second)]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        found = run(folders[0])
        for key, value in found.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                problems.append(f"metric {key!r} is a {type(value).__name__}, not a number or text")
        again = run(folders[1])
        numbers = {k: v for k, v in found.items() if isinstance(v, (int, float))}
        if numbers.keys() != {k for k, v in again.items() if isinstance(v, (int, float))} or not all(
            math.isclose(v, again[k], rel_tol=1e-5, abs_tol=1e-8) or (math.isnan(v) and math.isnan(again[k])) for k, v in numbers.items()
        ):
            problems.append("under the same seed, two evaluations give different numbers")
    return problems, ran


_CHECKS = {"energies": _energy, "transitions": _transition, "samplers": _sampler, "buffers": _buffer, "losses": _loss,
           "optimizers": _optimizer, "datasets": _dataset, "evaluators": _evaluator}


def check(kind: str, build: Callable[[], Any], *, dataset: Any = None, energy: Energy | None = None, sampler: Any = None,
          seed: int = 0, batch_size: int = 4, what: str | None = None, out_dir: Path | None = None) -> list[str]:
    """Check what ``build()`` returns against the contract of ``kind``.

    :param kind: the kind, plural or singular (``"transition"``).
    :param build: builds a fresh component each time it is called (it is called several times,
        under chosen seeds).
    :param dataset: data to check against (default: Gaussian points in 2-D); it sets the sample shape.
    :param energy: the energy samplers, transitions and losses run on (default: a quadratic bowl).
    :param sampler: the sampler that makes negatives for losses (default: noisy gradient steps).
    :return: the names of the checks that ran.
    :raises ContractViolation: listing every broken point.
    """
    kind_ = kind_named(kind)
    setting = Setting(dataset, energy, sampler, batch_size, out_dir)
    try:
        problems, ran = _CHECKS[kind_.name](build, setting, seed)
    except checked.ComponentContractError as exc:  # it returned the wrong thing: nothing further to check
        problems, ran = [str(exc)], []
    if problems:
        raise ContractViolation(what or f"{kind_.singular} {type(_seeded(seed, build)).__name__}", problems)
    return ran


def check_component(kind: str, name: str, params: dict[str, Any] | None = None, *, registries: Any = None,
                    dataset: Any = None, energy: Energy | None = None, sampler: Any = None, seed: int = 0,
                    batch_size: int = 4, out_dir: Path | None = None) -> list[str]:
    """Build the registered component ``name`` of ``kind`` from ``params`` (checked as in a recipe)
    and run :func:`check` on it. See :func:`check` for the other arguments."""
    from ebmkit._host.installed import default_registries

    registries = registries or default_registries()
    kind_ = kind_named(kind)
    spec = registries.spec(kind_.name, name, params or {})
    setting = Setting(dataset, energy, sampler, batch_size, out_dir)
    context = setting.context(kind_.name)
    return check(kind_.name, lambda: spec.build(**context), dataset=setting.dataset, energy=setting.energy,
                 sampler=setting.sampler, seed=seed, batch_size=batch_size, what=spec.entry.label, out_dir=out_dir)
