"""Score matching (ebmkit.plugins.score): DSM and SSM against the closed-form objectives of Gaussian energies.

For a Gaussian energy E(x) = ½(x − μ)ᵀP(x − μ) the score is −P(x − μ), so both losses are
quadratic in the data (and in DSM's noise, and in SSM's projections). Their averages over a
sample therefore depend only on its first two moments: on a sample whose mean and covariance
are *exactly* those of N(m, Σ) (``moment_matched``), and projections whose average vvᵀ is
exactly I, the losses must equal the closed forms to rounding. The random draws inside the
losses are checked apart, against standard errors measured over repeats.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ebmkit import Energy
from ebmkit._testkit.contract import Bowl, Points, check_component
from ebmkit._host.protocols import TrainBatch, needs_of
from ebmkit.plugins.toy.gaussian import QuadraticEnergy
from tests.conftest import RECIPES

import ebmkit.plugins.score
from ebmkit.plugins.score.dsm import DenoisingScoreMatching
from ebmkit.plugins.score.ssm import SlicedScoreMatching, draw_projections

DATA_MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
DATA_COV = torch.tensor([[1.2, 0.4], [0.4, 0.6]], dtype=torch.float64)
EYE = torch.eye(2, dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


class PrecisionEnergy(Energy):
    """E(x) = ½(x − μ)ᵀP(x − μ) with μ and P the parameters (P = (W + Wᵀ)/2), so that ∂L/∂W is
    the symmetric ∂L/∂P of a closed form written in P."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor):
        super().__init__()
        self.mean = nn.Parameter(mean.clone())
        self.weight = nn.Parameter(precision.clone())

    def precision(self) -> torch.Tensor:
        return (self.weight + self.weight.T) / 2

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        d = x - self.mean
        return 0.5 * ((d @ self.precision()) * d).sum(1)


def model() -> PrecisionEnergy:
    """A Gaussian model away from the optimum: μ = (0.3, 0.2), a non-diagonal P."""
    mean = torch.tensor([0.3, 0.2], dtype=torch.float64)
    return PrecisionEnergy(mean, torch.tensor([[1.5, -0.3], [-0.3, 0.8]], dtype=torch.float64))


def toy_quadratic() -> QuadraticEnergy:
    """The toy plugin's ``quadratic`` energy (P = LLᵀ, softplus diagonal), in float64."""
    energy = QuadraticEnergy(data_shape=(2,)).double()
    with torch.no_grad():
        energy.mean.copy_(torch.tensor([0.3, 0.2]))
        energy.lower[1, 0] = -0.4
        energy.raw_diagonal.copy_(torch.tensor([0.6, 0.1]))
    return energy


def moment_matched(n: int, dims: int, seed: int) -> torch.Tensor:
    """``n`` points in ``dims`` dimensions whose sample mean is exactly 0 and sample covariance
    (divided by n) exactly I."""
    z = torch.randn(n, dims, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    z = z - z.mean(0)
    chol = torch.linalg.cholesky(z.T @ z / n)
    return torch.linalg.solve_triangular(chol, z.T, upper=False).T


def gaussian_data(z: torch.Tensor) -> torch.Tensor:
    """Standardised points mapped to mean DATA_MEAN, covariance DATA_COV (exactly, if z is moment-matched)."""
    return DATA_MEAN + z @ torch.linalg.cholesky(DATA_COV).T


def score_matching_objective(mean: torch.Tensor, precision: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """J = E[½‖P(x − μ)‖² − tr P] for x ~ N(m, C): ½tr(PCP) + ½‖P(m − μ)‖² − tr P (Hyvärinen's
    objective, equal to ½E‖s − ∇log p‖² minus a θ-free constant)."""
    d = DATA_MEAN - mean
    return 0.5 * torch.trace(precision @ cov @ precision) + 0.5 * (precision @ d).pow(2).sum() - torch.trace(precision)


def score_matching_gradient(mean: torch.Tensor, precision: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """∂J/∂μ = −P²(m − μ), ∂J/∂P = ½(PC + CP) + ½(Pddᵀ + ddᵀP) − I, d = m − μ, written out by hand."""
    d = (DATA_MEAN - mean)[:, None]
    outer = d @ d.T
    grad_precision = 0.5 * (precision @ cov + cov @ precision) + 0.5 * (precision @ outer + outer @ precision) - EYE
    return -(precision @ precision @ d).squeeze(1), grad_precision


def dsm_objective(mean: torch.Tensor, precision: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[½σ²‖−P(x̃ − μ) + ε/σ‖²] for x ~ N(m, Σ): ½σ²[tr(PΣP) + ‖P(m − μ)‖² + ‖I/σ − σP‖²_F].
    It equals σ²·J with C = Σ + σ²I, plus d/2: its minimiser is N(m, Σ + σ²I)."""
    d = DATA_MEAN - mean
    residual = EYE / sigma - sigma * precision
    return 0.5 * sigma**2 * (torch.trace(precision @ DATA_COV @ precision) + (precision @ d).pow(2).sum() + residual.pow(2).sum())


def parameter_grads(energy: nn.Module, value: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value, list(energy.parameters())))


def flat(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


# -- SSM ------------------------------------------------------------------------------------------
#: Projection sets whose average vvᵀ is exactly I in 2-D: all four sign patterns (Rademacher's
#: distribution, enumerated), and √d times the basis vectors (points of the radius-√d sphere).
EXACT_PROJECTION_SETS = {
    "rademacher": torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64),
    "sphere_axes": math.sqrt(2) * EYE,
}


def ssm_on_exact_projections(loss: SlicedScoreMatching, energy: Energy, x: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    every = projections[:, None, :].expand(len(projections), *x.shape)  # each vector, for every sample
    return loss.per_projection(energy, x, every)["value"].mean()


@pytest.mark.parametrize("variance_reduction", [False, True], ids=["ssm", "ssm_vr"])
@pytest.mark.parametrize("projection_set", sorted(EXACT_PROJECTION_SETS))
def test_ssm_is_the_score_matching_objective_and_its_gradient(projection_set, variance_reduction):
    energy = model()
    x = gaussian_data(moment_matched(512, 2, seed=0))
    loss = SlicedScoreMatching(variance_reduction=variance_reduction)
    value = ssm_on_exact_projections(loss, energy, x, EXACT_PROJECTION_SETS[projection_set])
    precision = energy.precision().detach()
    exact = score_matching_objective(energy.mean.detach(), precision, DATA_COV)
    assert value.item() == pytest.approx(exact.item(), rel=1e-10, abs=1e-10)
    grad_mean, grad_weight = parameter_grads(energy, value)
    exact_mean, exact_precision = score_matching_gradient(energy.mean.detach(), precision, DATA_COV)
    torch.testing.assert_close(grad_mean, exact_mean, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad_weight, exact_precision, rtol=1e-9, atol=1e-10)
    assert exact_precision.abs().max() > 0.1 and exact_mean.abs().max() > 0.1  # away from the optimum


def test_ssm_gradient_through_the_toy_quadratic_energy():
    """The toy ``quadratic`` energy (P = LLᵀ): the gradient in (μ, L, softplus diagonal) is the closed
    form's, differentiated by autograd through the same parametrisation."""
    energy = toy_quadratic()
    x = gaussian_data(moment_matched(512, 2, seed=1))
    value = ssm_on_exact_projections(SlicedScoreMatching(), energy, x, EXACT_PROJECTION_SETS["rademacher"])
    exact = score_matching_objective(energy.mean, energy.precision(), DATA_COV)
    assert value.item() == pytest.approx(exact.item(), rel=1e-10)
    got, expected = flat(parameter_grads(energy, value)), flat(parameter_grads(energy, exact))
    torch.testing.assert_close(got[:2], expected[:2], rtol=1e-9, atol=1e-10)  # μ
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_ssm_minimiser_is_the_data_gaussian():
    """At μ = m, P = Σ⁻¹ the score-matching gradient vanishes: SSM is consistent."""
    energy = PrecisionEnergy(DATA_MEAN, torch.linalg.inv(DATA_COV))
    x = gaussian_data(moment_matched(256, 2, seed=2))
    value = ssm_on_exact_projections(SlicedScoreMatching(), energy, x, EXACT_PROJECTION_SETS["rademacher"])
    assert flat(parameter_grads(energy, value)).abs().max() < 1e-10


@pytest.mark.parametrize("projection", ["rademacher", "gaussian", "sphere"])
def test_projections_have_identity_second_moment(projection):
    torch.manual_seed(0)
    x = torch.zeros(500, 3, 2, 2)  # image-shaped: d = 12 entries per sample
    v = draw_projections(projection, 8, x).flatten(2).flatten(0, 1)
    second_moment = v.T @ v / len(v)
    # 4000 draws: the entries' standard errors are at most √(2/4000) ≈ 0.022 (Gaussian diagonal)
    assert (second_moment - torch.eye(12)).abs().max() < 0.11
    if projection == "sphere":
        torch.testing.assert_close(v.norm(dim=1), torch.full((len(v),), math.sqrt(12)))
    if projection == "rademacher":
        assert set(v.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(
    "projection,variance_reduction", [("rademacher", False), ("gaussian", False), ("sphere", False), ("gaussian", True)]
)
def test_ssm_with_random_projections_estimates_the_gradient(projection, variance_reduction):
    """Through ``__call__`` (projections drawn inside): the mean of 64 independent gradient estimates is
    within 5 standard errors of the closed form, and those errors are small against the gradient.

    The data are fixed (moment-matched), so only the projections vary; the estimator is unbiased,
    so |mean − exact|/SE is t-distributed with 63 degrees of freedom: beyond 5 with probability
    about 5·10⁻⁶ per coordinate. (With 16 estimates the heavy tails of the SE gave |t| up to 5.7
    in 25 trials: too few to judge by.)"""
    energy = model()
    x = gaussian_data(moment_matched(512, 2, seed=3))
    loss = SlicedScoreMatching(projection=projection, num_projections=2, variance_reduction=variance_reduction)
    torch.manual_seed(0)
    estimates = torch.stack([flat(parameter_grads(energy, loss(TrainBatch(energy, x)).value)) for _ in range(64)])
    mean, standard_error = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
    exact = flat(score_matching_gradient(energy.mean.detach(), energy.precision().detach(), DATA_COV))
    assert ((mean - exact).abs() <= 5 * standard_error + 1e-9).all(), (mean, exact, standard_error)
    assert (5 * standard_error).max() < 0.1 * exact.abs().max()


def test_ssm_labels_follow_their_samples_across_projection_copies():
    """M projections at once give what each projection alone gives, with a per-class energy."""
    torch.manual_seed(0)
    energy = Bowl((3, 2, 2), num_classes=3)
    x, cond = torch.randn(5, 3, 2, 2), torch.tensor([0, 1, 2, 1, 0])
    projections = draw_projections("rademacher", 3, x)
    together = SlicedScoreMatching().per_projection(energy, x, projections, cond)["value"]
    apart = torch.cat([SlicedScoreMatching().per_projection(energy, x, projections[i : i + 1], cond)["value"] for i in range(3)])
    torch.testing.assert_close(together, apart)
    unlabelled = SlicedScoreMatching().per_projection(energy, x, projections, None)["value"]
    assert not torch.allclose(together, unlabelled)


# -- DSM ------------------------------------------------------------------------------------------
def dsm_on_moment_matched_noise(loss: DenoisingScoreMatching, energy: Energy, n_per_level: int, seed: int) -> torch.Tensor:
    """DSM's loss where, at each noise level, the (x, ε) pairs have exactly the moments of
    N(m, Σ) × N(0, I) (jointly: x and ε exactly uncorrelated)."""
    xs, noises, sigmas = [], [], []
    for index, sigma in enumerate(loss.levels()):
        z = moment_matched(n_per_level, 4, seed=seed + index)
        xs.append(gaussian_data(z[:, :2]))
        noises.append(z[:, 2:])
        sigmas.append(torch.full((n_per_level,), sigma, dtype=torch.float64))
    losses, _ = loss.per_sample(energy, torch.cat(xs), torch.cat(noises), torch.cat(sigmas))
    return losses.mean()


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.5])
def test_dsm_is_the_closed_form_objective_and_its_gradient(sigma):
    energy = model()
    value = dsm_on_moment_matched_noise(DenoisingScoreMatching(sigma=sigma), energy, 512, seed=0)
    mean, precision = energy.mean.detach(), energy.precision().detach()
    assert value.item() == pytest.approx(dsm_objective(mean, precision, sigma).item(), rel=1e-10)
    # DSM = σ²·(the score-matching objective of the noisy data, covariance Σ + σ²I) + constant
    noisy_cov = DATA_COV + sigma**2 * EYE
    exact_mean, exact_precision = (sigma**2 * g for g in score_matching_gradient(mean, precision, noisy_cov))
    grad_mean, grad_weight = parameter_grads(energy, value)
    torch.testing.assert_close(grad_mean, exact_mean, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad_weight, exact_precision, rtol=1e-9, atol=1e-12)


def test_dsm_gradient_vanishes_at_the_noisy_gaussian_only():
    sigma = 0.5
    noisy = PrecisionEnergy(DATA_MEAN, torch.linalg.inv(DATA_COV + sigma**2 * EYE))
    clean = PrecisionEnergy(DATA_MEAN, torch.linalg.inv(DATA_COV))
    loss = DenoisingScoreMatching(sigma=sigma)
    assert flat(parameter_grads(noisy, dsm_on_moment_matched_noise(loss, noisy, 256, seed=1))).abs().max() < 1e-10
    assert flat(parameter_grads(clean, dsm_on_moment_matched_noise(loss, clean, 256, seed=1))).abs().max() > 0.05


def test_dsm_schedule_is_the_mean_over_levels_and_its_minimiser_a_mixture_width():
    loss = DenoisingScoreMatching(sigma_min=0.2, sigma_max=1.0, num_levels=4)
    levels = loss.levels()
    assert levels[0] == pytest.approx(1.0) and levels[-1] == pytest.approx(0.2)
    assert levels[1] / levels[0] == pytest.approx(levels[3] / levels[2])  # geometric
    energy = model()
    mean, precision = energy.mean.detach(), energy.precision().detach()
    value = dsm_on_moment_matched_noise(loss, energy, 256, seed=2)
    expected = sum(dsm_objective(mean, precision, s) for s in levels) / len(levels)
    assert value.item() == pytest.approx(expected.item(), rel=1e-10)
    # The optimum over Gaussians: N(m, Σ + σ̄²I) with σ̄² = Σσ⁴/Σσ², the docstring's claim
    effective = sum(s**4 for s in levels) / sum(s**2 for s in levels)
    optimum = PrecisionEnergy(DATA_MEAN, torch.linalg.inv(DATA_COV + effective * EYE))
    assert flat(parameter_grads(optimum, dsm_on_moment_matched_noise(loss, optimum, 256, seed=2))).abs().max() < 1e-10


def test_dsm_schedule_draws_each_level_uniformly():
    loss = DenoisingScoreMatching(sigma_min=0.01, sigma_max=1.0, num_levels=5)
    torch.manual_seed(0)
    sigmas = loss.draw_sigmas(torch.zeros(10_000, 2))
    counts = torch.stack([(sigmas == torch.tensor(s, dtype=sigmas.dtype)).sum() for s in loss.levels()])
    assert counts.sum() == 10_000 and ((counts - 2000).abs() < 200).all()  # binomial SD 40


def test_dsm_short_optimisation_reaches_the_noisy_gaussian():
    """Adam on the toy quadratic energy, fresh noise drawn by ``__call__`` each step, reaches
    μ = m and P⁻¹ = Σ + σ²I, and stays well away from the clean Σ (0.25 off on the diagonal)."""
    sigma = 0.5
    torch.manual_seed(0)
    energy = QuadraticEnergy(data_shape=(2,)).double()
    x = gaussian_data(moment_matched(2048, 2, seed=4))
    loss = DenoisingScoreMatching(sigma=sigma)
    optimizer = torch.optim.Adam(energy.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=150, gamma=0.2)
    for _ in range(450):
        optimizer.zero_grad()
        loss(TrainBatch(energy, x)).value.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        cov = torch.linalg.inv(energy.precision())
        torch.testing.assert_close(energy.mean, DATA_MEAN, rtol=0, atol=0.03)
        torch.testing.assert_close(cov, DATA_COV + sigma**2 * EYE, rtol=0, atol=0.05)


# -- both: contract, shapes, labels, recipes --------------------------------------------------------
LOSSES = {
    "dsm": {"sigma": 0.1},
    "dsm_schedule": {"sigma_min": 0.01, "sigma_max": 1.0, "num_levels": 5},
    "ssm": {"num_projections": 2},
    "ssm_vr_sphere": {"projection": "sphere", "variance_reduction": True},
}


@pytest.fixture
def score_plugin(ebmkit_register):
    return ebmkit_register(ebmkit.plugins.score)


@pytest.mark.parametrize("case", sorted(LOSSES))
def test_contract(case, score_plugin):
    name = case.split("_")[0]
    assert check_component("loss", name, LOSSES[case]) == ["shapes", "gradients", "detaching", "determinism"]
    # images with labels: any sample shape, labels passed to the energy
    check_component("loss", name, LOSSES[case], dataset=Points((3, 4, 4), num_classes=3))
    factory = DenoisingScoreMatching if name == "dsm" else SlicedScoreMatching
    assert not needs_of(factory(**LOSSES[case])).negatives


@pytest.mark.parametrize("name", ["dsm", "ssm"])
def test_labels_reach_the_energy(name):
    """With a per-class energy, the loss of a labelled batch is not that of the unlabelled one."""
    energy = Bowl((3, 4, 4), num_classes=3)
    with torch.no_grad():
        energy.centre.copy_(torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    x, cond = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = DenoisingScoreMatching(sigma=0.3) if name == "dsm" else SlicedScoreMatching()
    torch.manual_seed(1)
    labelled = loss(TrainBatch(energy, x, cond)).value
    torch.manual_seed(1)
    assert not torch.allclose(labelled, loss(TrainBatch(energy, x)).value)


def test_noise_choice_is_checked(score_plugin):
    from ebmkit._host.errors import EbmkitError
    from ebmkit._host.installed import default_registries

    registries = default_registries()
    bad_choices = [
        ({}, "give sigma"),
        ({"sigma": 0.1, "sigma_max": 1.0}, "not both"),
        ({"sigma_min": 1.0, "sigma_max": 0.1}, "sigma_min < sigma_max"),
        ({"sigma": -0.1}, "> 0"),
    ]
    for bad, words in bad_choices:
        with pytest.raises(EbmkitError, match=words):
            check_component("loss", "dsm", bad, registries=registries)


@pytest.mark.parametrize("recipe", ["dsm_8gaussians.toml", "ssm_8gaussians.toml"])
def test_recipe_trains_a_few_steps(recipe, score_plugin, tmp_path):
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    overrides = ["train.steps=3", "train.log_every=1",
                 'evaluators=[{name = "density2d", bins = 20, num_test = 100, plot = false}]']
    result = train(load(RECIPES / recipe, overrides), tmp_path, live=False)
    assert math.isfinite(result.metrics["loss"]) and math.isfinite(result.metrics["density2d/grid_kl"])
    name = recipe.split("_")[0]
    assert f"loss/{name}" in result.metrics and "e_neg" not in result.metrics  # the sampler never ran in training
