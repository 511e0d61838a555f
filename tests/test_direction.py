"""The direction test: one gradient step of every registered loss term moves a quadratic energy
toward the term's exact optimum, and a sign-flipped term moves it away.

The energy is the toy plugin's Gaussian energy E(x) = ½(x − μ)ᵀP(x − μ) on 2-D data drawn from
N(m*, I). Each term says, in :data:`TARGETS`, what its optimum is and how the test measures
progress toward it, independently of the term's own code:

- ``data``: the maximum-likelihood terms (CD and the estimators that share its optimum) are
  minimised by the data Gaussian itself; progress is the squared distance of (μ, P) to (m*, I).
- other targets name the term's own optimum: the energy regulariser's is zero energy, the
  improved-CD KL term's is samples at low energy under the frozen model, the entropy term's
  is samples spread apart.

A registered loss with no entry here fails the first test: a new loss must say where its optimum
is. A step is taken along the normalised gradient, small enough to be first order, in float64
and with batches large enough that the estimators' noise cannot reverse it (fixed seeds).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch

from ebmkit._testkit.contract import Samples
from ebmkit._host.protocols import LossOutput, TrainBatch, needs_of
from ebmkit._host.installed import default_registries

DATA_MEAN = torch.tensor([-1.0, 0.5], dtype=torch.float64)
BATCH = 8192
STEP = 1e-3


def quadratic(learn_offset: bool = False):
    """μ = (1, 1), P = I/4: far from the data's N(m*, I) in both mean and precision (offset c = 0)."""
    return default_registries().create("energies", "quadratic", data_shape=(2,), init_scale=2.0, learn_offset=learn_offset).double()


def model_samples(energy, n: int) -> torch.Tensor:
    """Exact samples of N(μ, P⁻¹): μ + L⁻ᵀ z with P = L Lᵀ."""
    chol = energy.cholesky().detach()
    z = torch.randn(n, 2, dtype=torch.float64)
    return energy.mean.detach() + torch.linalg.solve_triangular(chol.T, z.T, upper=True).T


def langevin_chain(energy, x0: torch.Tensor, keep_graph: int) -> tuple[torch.Tensor, torch.Tensor]:
    sampler = default_registries().create("samplers", "chain", steps=2, transitions=[{"name": "langevin", "step_size": 0.05}])
    result = sampler.sample(energy, x0, keep_graph=keep_graph)
    return result.x, result.x_graph


def distance_to_data(energy, variance: float = 1.0) -> float:
    """Squared distance of (μ, P) to the data Gaussian's (m*, I / variance)."""
    precision = energy.precision().detach()
    target = torch.eye(2, dtype=torch.float64) / variance
    return float((energy.mean.detach() - DATA_MEAN).pow(2).sum() + (precision - target).pow(2).sum())


def batch_for(loss, energy, seed: int) -> TrainBatch:
    """The batch a loop would give the term, with the model's negatives drawn exactly (or through
    a Langevin chain when the term differentiates through the sampler)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    x_pos = DATA_MEAN + torch.randn(BATCH, 2, dtype=torch.float64)
    needs = needs_of(loss)
    batch = TrainBatch(energy, x_pos, reference_set=Samples(DATA_MEAN + 0.5 * torch.randn(256, 2, dtype=torch.float64)))
    if needs.graph_steps:
        batch.x_neg, batch.x_neg_graph = langevin_chain(energy, 3.0 * torch.randn(BATCH, 2, dtype=torch.float64), needs.graph_steps)
    elif needs.negatives:
        batch.x_neg = model_samples(energy, BATCH)
    torch.random.set_rng_state(generator_state)
    return batch


def step(loss, energy, seed: int = 0) -> None:
    """One step along the term's normalised negative gradient."""
    value = loss(batch_for(loss, energy, seed)).value
    params = [p for p in energy.parameters()]
    grads = torch.autograd.grad(value, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    assert norm > 0, "the term's gradient is zero at the start"
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= STEP * g / norm


# -- what each term's optimum is, measured independently of the term --------------------------
def toward_data(loss, seed: int = 0, variance: float = 1.0) -> tuple[float, float]:
    energy = quadratic()
    before = distance_to_data(energy, variance)
    step(loss, energy, seed)
    return before, distance_to_data(energy, variance)


def toward_normalised_data(loss, seed: int = 0) -> tuple[float, float]:
    """NCE's optimum: the data Gaussian with its offset c = log Z = log 2π (the energy learns its
    own normaliser), so the distance counts the offset too."""
    energy = quadratic(learn_offset=True)

    def distance() -> float:
        return distance_to_data(energy) + float((energy.offset.detach() - math.log(2 * math.pi)) ** 2)

    before = distance()
    step(loss, energy, seed)
    return before, distance()


def toward_smoothed_data(sigma: float) -> Callable:
    """Denoising score matching's optimum: the data convolved with the noise, N(m*, (1 + σ²) I)."""
    return lambda loss, seed=0: toward_data(loss, seed, variance=1.0 + sigma**2)


def toward_zero_energy(loss, seed: int = 0) -> tuple[float, float]:
    energy = quadratic()
    batch = batch_for(loss, energy, seed)
    points = torch.cat([batch.x_pos, batch.x_neg])

    def mean_square(e) -> float:
        with torch.no_grad():
            return float(e(points).pow(2).mean())

    before = mean_square(energy)
    step(loss, energy, seed)
    return before, mean_square(energy)


def toward_low_frozen_energy(loss, seed: int = 0) -> tuple[float, float]:
    """The KL term's optimum: the sampler's output (same starts, same noise) at low energy under
    the energy as it was before the step."""
    energy = quadratic()
    frozen = copy.deepcopy(energy)

    def sampled_energy(e) -> float:
        torch.manual_seed(seed)
        x0 = 3.0 * torch.randn(BATCH, 2, dtype=torch.float64)
        x, _ = langevin_chain(e, x0, keep_graph=0)
        with torch.no_grad():
            return float(frozen(x).mean())

    before = sampled_energy(energy)
    step(loss, energy, seed)
    return before, sampled_energy(energy)


def toward_spread_samples(loss, seed: int = 0) -> tuple[float, float]:
    """The entropy term's optimum: samples (same starts, same noise) far from their nearest
    reference sample; the measure is minus the mean log nearest-neighbour distance."""
    energy = quadratic()
    reference = batch_for(loss, energy, seed).reference_set.samples

    def closeness(e) -> float:
        torch.manual_seed(seed)
        x, _ = langevin_chain(e, 3.0 * torch.randn(BATCH, 2, dtype=torch.float64), keep_graph=0)
        return float(-torch.cdist(x, reference).min(dim=1).values.log().mean())

    before = closeness(energy)
    step(loss, energy, seed)
    return before, closeness(energy)


def toward_transport_velocity(loss, seed: int = 0) -> tuple[float, float]:
    """Flow matching's optimum: the velocity of the transport from N(0, I) to the data N(m*, I),
    the constant m*. For the quadratic energy the velocity −ε∇E = α + Bx is affine (α = εPμ,
    B = −εP), and with x₀ and x₁ drawn independently the term's expected loss is, in closed form
    (up to a constant and the mean over the dimensions), ‖c‖² + c·d + ‖d‖²/3 + ⅔‖B‖², with
    c = α − m*, d = Bm*: the measure (tests/test_energy_matching.py checks the OT coupling's)."""
    energy, temperature = quadratic(), TARGETS["flow_matching"][0]["temperature"]

    def expected_loss(e) -> float:
        precision, mean = e.precision().detach(), e.mean.detach()
        b = -temperature * precision
        c, d = temperature * precision @ mean - DATA_MEAN, b @ DATA_MEAN
        return float(c @ c + c @ d + d @ d / 3 + 2 * (b * b).sum() / 3)

    before = expected_loss(energy)
    step(loss, energy, seed)
    return before, expected_loss(energy)


#: loss name -> (parameters, how progress toward its optimum is measured)
TARGETS: dict[str, tuple[dict, Callable]] = {
    "cd": ({}, toward_data),
    "energy_l2": ({}, toward_zero_energy),
    "kl": ({"last_steps": 1}, toward_low_frozen_energy),
    "nn_entropy": ({"num_reference": 256, "min_buffer": 0}, toward_spread_samples),
    "dcd_recovery": ({"sigma": 0.5, "steps": 5, "transition": {"name": "langevin", "step_size": 0.01}}, toward_data),
    "dcd_log_mean_exp": ({"sigma": 1.0, "num_particles": 16}, toward_data),
    "dsm": ({"sigma": 0.5}, toward_smoothed_data(0.5)),
    "ssm": ({"num_projections": 4}, toward_data),
    "energy_discrepancy": ({"t_noise": 1.0, "num_particles": 16}, toward_data),
    "nce": ({"noise": "gaussian", "noise_std": 2.0}, toward_normalised_data),
    # on unlabelled data JEM's generative term is CD on the marginal energy (its classification
    # term has its own exact test in tests/test_jem.py)
    "jem": ({"classify_weight": 0.0}, toward_data),
    # the trimmed mean and the clamp are checked against their definitions in tests/test_energy_matching.py
    "energy_matching_cd": ({"temperature": 1.0, "cd_weight": 1.0, "clamp": None}, toward_data),
    "flow_matching": ({"temperature": 1.0, "coupling": "independent"}, toward_transport_velocity),
}


class Flipped:
    """A term with its sign flipped: what a loss that trains the wrong way round looks like."""

    def __init__(self, term):
        self.term = term
        self.needs = needs_of(term)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        out = self.term(batch)
        return LossOutput(-out.value, out.metrics)


def build(name: str):
    params, _ = TARGETS[name]
    return default_registries().create("losses", name, **params)


def test_every_registered_loss_says_where_its_optimum_is():
    missing = sorted(set(default_registries()["losses"]) - set(TARGETS))
    assert not missing, f"add a direction-test entry (parameters and target) for {missing}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_one_step_of_the_loss_moves_toward_its_optimum(name):
    with torch.random.fork_rng(devices=[]):
        before, after = TARGETS[name][1](build(name))
    assert after < before, f"{name}: a gradient step moved away from its optimum ({before:.6g} -> {after:.6g})"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_same_loss_with_its_sign_flipped_moves_away(name):
    with torch.random.fork_rng(devices=[]):
        before, after = TARGETS[name][1](Flipped(build(name)))
    assert after > before, f"{name} flipped: the test did not notice ({before:.6g} -> {after:.6g})"
