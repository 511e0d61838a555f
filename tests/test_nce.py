"""Noise-contrastive estimation against exact answers on a Gaussian family with a learned offset."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from ebmkit._testkit.contract import Points, check_component
from ebmkit._host.errors import RecipeError
from ebmkit._host.protocols import TrainBatch
import ebmkit.plugins.nce
from ebmkit.plugins.toy.gaussian import QuadraticEnergy
from ebmkit.plugins.nce.nce import NoiseContrastiveEstimation

DATA_MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
DATA_COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
#: log Z of the data Gaussian's quadratic energy: (d/2)·log 2π + ½·log det Σ
DATA_LOG_Z = math.log(2 * math.pi) + 0.5 * math.log(float(torch.det(DATA_COV)))

NOISES = {
    "batch_gaussian": {},
    "gaussian": {"noise_mean": 0.0, "noise_std": 2.0},
    "uniform": {"noise_low": -5.0, "noise_high": 5.0},
}


@pytest.fixture(autouse=True)
def nce_plugin(ebmkit_register):
    ebmkit_register(ebmkit.plugins.nce)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def data(n: int, seed: int = 0, exact_moments: bool = False) -> torch.Tensor:
    """n points of N(m, Σ); with ``exact_moments`` whitened so that their own mean and covariance
    are exactly m and Σ (the Monte-Carlo error of the first two moments removed)."""
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if exact_moments:
        z = z - z.mean(0)
        z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T, correction=0))).T
    return DATA_MEAN + z @ torch.linalg.cholesky(DATA_COV).T


def gaussian_model() -> QuadraticEnergy:
    """μ = (0.2, −0.4), a non-diagonal P, offset 0.7: away from the optimum in every parameter."""
    energy = QuadraticEnergy(data_shape=(2,), learn_offset=True).double()
    with torch.no_grad():
        energy.mean.copy_(torch.tensor([0.2, -0.4]))
        energy.lower[1, 0] = 0.3
        energy.raw_diagonal.copy_(torch.tensor([0.2, 0.9]))
        energy.offset.fill_(0.7)
    return energy


def parameter_grad(energy, value: torch.Tensor) -> torch.Tensor:
    energy.zero_grad()
    value.backward()
    return torch.cat([p.grad.flatten() for p in energy.parameters()])


def population_nce(energy, noise_ratio: float, noise_std: float, with_log_nu_q: bool = True) -> torch.Tensor:
    """The NCE objective for data N(m, Σ) and noise N(0, s²I), by quadrature on a 2-D grid:
    ∫ p_d softplus(−G) + ν ∫ q softplus(G), G = −E − log(ν q)."""
    axis = torch.linspace(-9, 9, 361, dtype=torch.float64)
    cell = float(axis[1] - axis[0]) ** 2
    grid = torch.cartesian_prod(axis, axis)
    log_p = MultivariateNormal(DATA_MEAN, DATA_COV).log_prob(grid)
    log_q = MultivariateNormal(torch.zeros(2, dtype=torch.float64), noise_std**2 * torch.eye(2, dtype=torch.float64)).log_prob(grid)
    g = -energy(grid) - (math.log(noise_ratio) + log_q if with_log_nu_q else 0.0)
    softplus = torch.nn.functional.softplus
    return cell * (log_p.exp() * softplus(-g) + noise_ratio * log_q.exp() * softplus(g)).sum()


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_the_optimum_is_the_data_gaussian_with_the_offset_at_log_z(noise):
    """Minimised to convergence (L-BFGS, the noise draws fixed by a seed), NCE recovers μ = m,
    P = Σ⁻¹ and the offset c = log Z: the energy is self-normalised.

    20 000 data points whitened to the exact first two moments, and ν = 4 (80 000 noise points);
    over seeds 0–2 the largest error of any entry was 0.035, so the tolerance is 0.06. Without
    the log ν q term the optimum moves: for the box noise only the offset, by log(ν/100) ≈ −3.2.
    """
    x = data(20000, exact_moments=True)
    loss = NoiseContrastiveEstimation(noise=noise, noise_ratio=4.0, **NOISES[noise])
    energy = QuadraticEnergy(data_shape=(2,), learn_offset=True).double()
    optimizer = torch.optim.LBFGS(energy.parameters(), max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        torch.manual_seed(1)  # the same noise at every evaluation: a fixed objective
        value = loss(TrainBatch(energy, x)).value
        value.backward()
        return value

    with torch.random.fork_rng(devices=[]):
        optimizer.step(objective)
    with torch.no_grad():
        assert energy.mean.tolist() == pytest.approx(DATA_MEAN.tolist(), abs=0.06)
        assert energy.precision().flatten().tolist() == pytest.approx(torch.linalg.inv(DATA_COV).flatten().tolist(), abs=0.06)
        assert float(energy.offset) == pytest.approx(DATA_LOG_Z, abs=0.06)
        # Self-normalised: the offset is the quadratic part's own log Z.
        assert float(energy.offset) == pytest.approx(float(energy.log_normalizer()), abs=0.06)


@pytest.mark.parametrize("noise_ratio", [1.0, 2.5])
def test_gradient_is_the_population_gradient(noise_ratio):
    """The estimator's parameter gradient on 200 000 data points equals autograd's gradient of the
    population objective (by quadrature) at a point away from the optimum. A non-integer ν
    checks the weighting of ⌈ν⌉·B noise draws by ν."""
    tolerance = 0.01  # Monte-Carlo error of the estimate is about 0.002
    model = gaussian_model()
    exact = parameter_grad(model, population_nce(model, noise_ratio, 2.0))
    # The test tells the right objective from one without log ν q, and from one with another ν.
    wrong = parameter_grad(model, population_nce(model, noise_ratio, 2.0, with_log_nu_q=False))
    other_nu = parameter_grad(model, population_nce(model, noise_ratio + 1.0, 2.0))
    assert (exact - wrong).abs().max() > 5 * tolerance and (exact - other_nu).abs().max() > 5 * tolerance

    loss = NoiseContrastiveEstimation(noise="gaussian", noise_ratio=noise_ratio, noise_mean=0.0, noise_std=2.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        estimate = parameter_grad(model, loss(TrainBatch(model, data(200000, seed=3))).value)
    assert torch.allclose(estimate, exact, atol=tolerance), (estimate, exact)


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_the_noise_log_density_is_that_of_the_noise_drawn(noise):
    """q's log density is exact for the samples the term draws: exp(log q) integrates to 1 on a grid,
    and its mean and covariance by quadrature are those of 200 000 draws."""
    loss = NoiseContrastiveEstimation(noise=noise, noise_scale=1.5, **NOISES[noise])
    batch = data(256, seed=4)
    q = loss.noise_distribution(batch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        draws = q.sample((200000,))
    axis = torch.linspace(-12, 12, 481, dtype=torch.float64)
    cell = float(axis[1] - axis[0]) ** 2
    grid = torch.cartesian_prod(axis, axis)
    density = q.log_prob(grid).exp()
    mass = cell * density.sum()
    mean = cell * (density[:, None] * grid).sum(0)
    centred = grid - mean
    cov = cell * (density[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    assert float(mass) == pytest.approx(1.0, abs=0.01)
    assert mean.tolist() == pytest.approx(draws.mean(0).tolist(), abs=0.03)
    assert cov.flatten().tolist() == pytest.approx(torch.cov(draws.T).flatten().tolist(), abs=0.05)
    if noise == "batch_gaussian":  # fitted to the batch, widened by noise_scale
        assert mean.tolist() == pytest.approx(batch.mean(0).tolist(), abs=1e-3)
        expected = 1.5**2 * torch.cov(batch.T, correction=0)
        assert cov.flatten().tolist() == pytest.approx(expected.flatten().tolist(), abs=0.01)
    if noise == "uniform":
        assert bool(((draws >= -5) & (draws <= 5)).all())
        assert float(q.log_prob(torch.tensor([[5.5, 0.0]], dtype=torch.float64))) == -math.inf


def test_the_fitted_noise_is_detached_from_the_batch():
    x = data(64).requires_grad_(True)
    q = NoiseContrastiveEstimation().noise_distribution(x.detach())
    assert not q.loc.requires_grad and not q.scale_tril.requires_grad
    energy = gaussian_model()
    value = NoiseContrastiveEstimation()(TrainBatch(energy, x)).value
    (grad_x,) = torch.autograd.grad(value, x)
    # Only E(x) depends on x: the gradient is −σ(−G)·(−∇E)/B per point, with q held fixed.
    with torch.no_grad():
        q = NoiseContrastiveEstimation().noise_distribution(x.detach())
        g = -energy(x) - q.log_prob(x)
    x2 = x.detach().requires_grad_(True)
    expected = torch.autograd.grad((torch.sigmoid(-g) * energy(x2)).sum() / len(x), x2)[0]
    assert torch.allclose(grad_x, expected, atol=1e-10)


def test_data_outside_the_uniform_box_is_counted_and_teaches_nothing():
    loss = NoiseContrastiveEstimation(noise="uniform", noise_low=-1.0, noise_high=1.0)
    energy = gaussian_model()
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    out = loss(TrainBatch(energy, x))
    assert float(out.metrics["nce/data_outside_noise"]) == 0.5
    assert math.isfinite(float(out.value.detach()))
    grads = torch.autograd.grad(out.value, list(energy.parameters()))
    assert all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_the_term_keeps_the_loss_contract(noise):
    params = {"noise": noise, "noise_ratio": 1.5, **NOISES[noise]}
    assert check_component("loss", "nce", params) == ["shapes", "gradients", "detaching", "determinism"]
    # A conditional energy: the noise draws are labelled like the batch.
    check_component("loss", "nce", params, dataset=Points(num_classes=3))


def test_parameters_are_checked():
    with pytest.raises(RecipeError, match="noise_high must be above noise_low"):
        check_component("loss", "nce", {"noise": "uniform", "noise_low": 1.0, "noise_high": 0.0})
    with pytest.raises(RecipeError, match="noise_ratio"):
        check_component("loss", "nce", {"noise_ratio": 0.0})
    with pytest.raises(RecipeError, match="noise"):
        check_component("loss", "nce", {"noise": "laplace"})


def test_the_recipe_trains_a_self_normalised_energy(tmp_path):
    """A short run of the shipped recipe: the grid KL falls, and the energy is close to
    normalised (log ∫ exp(−E) near 0 on the grid) without anything normalising it."""
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load
    from ebmkit.plugins.toy.densities import Grid
    from ebmkit.plugins.toy.density2d import energies
    from tests.conftest import RECIPES, read_metrics

    overrides = ["train.steps=300", "train.log_every=100", "evaluators[0].every=0", "evaluators[0].plot=false",
                 "evaluators[0].num_test=1000"]
    run = train(load(RECIPES / "nce_8gaussians.toml", overrides), tmp_path, live=False)
    rows = read_metrics(tmp_path)
    first, last = rows[0]["density2d/grid_kl"], run.metrics["density2d/grid_kl"]
    assert first > 1.0 and last < 0.5 * first
    assert all("e_neg" not in r for r in rows if "loss" in r)  # the sampler never ran in training
    import ebmkit

    energy = ebmkit.load(tmp_path)
    grid = Grid(-4.0, 4.0, 100)
    log_z = torch.logsumexp(-energies(energy, grid.centers(), torch.device("cpu")), 0) + math.log(grid.cell_area)
    assert abs(float(log_z)) < 0.5
