"""Energy discrepancy: the same estimator as DCD's log-mean-exp, and exact answers for a Gaussian
energy (Gaussian perturbation) and a 3-bit Boltzmann machine (Bernoulli perturbation)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ebmkit import Energy
from ebmkit._testkit.contract import Points, check_component
from ebmkit._host.errors import RecipeError
from ebmkit._host.protocols import TrainBatch
from ebmkit.plugins.dcd.energy_discrepancy import BernoulliFlip, EnergyDiscrepancy
from ebmkit.plugins.dcd.log_mean_exp import DCDLogMeanExp
from ebmkit.plugins.toy.gaussian import QuadraticEnergy
from ebmkit.plugins.toy.mlp import MLPEnergy

DATA_MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
DATA_COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def parameter_grad(energy, value: torch.Tensor) -> torch.Tensor:
    energy.zero_grad()
    value.backward()
    return torch.cat([p.grad.flatten() for p in energy.parameters()])


def seeded(seed: int, fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


# -- the Gaussian perturbation ----------------------------------------------------------------
def gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return DATA_MEAN + z @ torch.linalg.cholesky(DATA_COV).T


def gaussian_model() -> QuadraticEnergy:
    energy = QuadraticEnergy(data_shape=(2,)).double()
    with torch.no_grad():
        energy.mean.copy_(torch.tensor([0.2, -0.4]))
        energy.lower[1, 0] = 0.3
        energy.raw_diagonal.copy_(torch.tensor([0.2, 0.9]))
    return energy


def exact_gaussian_ed(mean: torch.Tensor, precision: torch.Tensor, s: float) -> torch.Tensor:
    """E_p[U(x)] − E_y[U_s(y)] for U = ½(x − μ)ᵀP(x − μ), data N(m, Σ), y = x + sξ.

    U_s(y) = −log ∫ exp(−U(x)) N(y; x, s²I) dx = ½(y − μ)ᵀC⁻¹(y − μ) + ½·log det(I + s²P),
    C = P⁻¹ + s²I, and y ~ N(m, Σ + s²I). No constant is left over: this is the exact limit of
    the estimator's value minus log M (w = 0, M → ∞).
    """
    eye = torch.eye(2, dtype=precision.dtype)
    c_inv = torch.linalg.inv(torch.linalg.inv(precision) + s**2 * eye)
    d = DATA_MEAN - mean
    data_term = 0.5 * (torch.trace(precision @ DATA_COV) + d @ precision @ d)
    smoothed = 0.5 * (torch.trace(c_inv @ (DATA_COV + s**2 * eye)) + d @ c_inv @ d) + 0.5 * torch.logdet(eye + s**2 * precision)
    return data_term - smoothed


def test_gaussian_case_is_dcd_log_mean_exp_on_the_same_noise():
    """Same seed, same draws in the same order: the same loss, to the bit, for w = 1 and w = 0."""
    energy = MLPEnergy(hidden=16, depth=2, data_shape=(2,))
    x = torch.randn(64, 2)
    for w in (1.0, 0.0):
        ed = seeded(3, lambda: EnergyDiscrepancy(t_noise=0.7, num_particles=5, stabilizer=w)(TrainBatch(energy, x)).value)  # noqa: B023
        dcd = seeded(3, lambda: DCDLogMeanExp(sigma=0.7, kernel="ve", num_particles=5, stabilizer=w)(TrainBatch(energy, x)).value)  # noqa: B023
        assert torch.equal(ed, dcd)


def test_gaussian_case_is_the_reference_code():
    """The ED code (J-zin/energy-discrepancy, notebooks/density_estimation.ipynb, energy_discrepancy),
    restated: ξ_i then ξ_ij drawn in that order, x'_ij = x_i + sξ_i + sξ_ij."""
    energy = MLPEnergy(hidden=16, depth=2, data_shape=(2,))
    x, s, m, w = torch.randn(32, 2), 0.6, 4, 1.0

    def reference():
        brown_i = torch.randn_like(x) * s
        brown_ij = torch.randn(x.shape[0], m, 2) * s
        perturbed = x.unsqueeze(1) + brown_i.unsqueeze(1) + brown_ij
        val = energy(x)[:, None] - energy(perturbed.view(-1, 2)).view(x.shape[0], -1)
        val = torch.cat([val, math.log(w) * torch.ones_like(val[:, :1])], dim=-1)
        return val.logsumexp(dim=-1).mean()

    ours = seeded(5, lambda: EnergyDiscrepancy(t_noise=s, num_particles=m, stabilizer=w)(TrainBatch(energy, x)).value)
    assert torch.allclose(ours, seeded(5, reference), atol=1e-6)


@pytest.mark.parametrize("s", [0.5, 1.0])
def test_gaussian_gradient_and_value_are_the_exact_energy_discrepancy(s):
    """With w = 0 and M = 128, on 8 000 data points: the parameter gradient equals autograd's
    gradient of the closed form, and the value minus log M equals the closed form, within 0.05
    (over five seeds the largest errors were 0.031 and 0.025, finite-M bias included)."""
    m, tolerance = 128, 0.05
    model = gaussian_model()
    exact_value = exact_gaussian_ed(model.mean, model.precision(), s)
    exact = parameter_grad(model, exact_value)
    # The test tells the right perturbation scale from a wrong one: their gradients differ by more than 0.15.
    wrong_scale = parameter_grad(model, exact_gaussian_ed(model.mean, model.precision(), 1.5 * s))
    assert (exact - wrong_scale).abs().max() > 3 * tolerance

    loss = EnergyDiscrepancy(t_noise=s, num_particles=m, stabilizer=0.0)
    value = seeded(1, lambda: loss(TrainBatch(model, gaussian_data(8000))).value)
    assert float(value.detach()) - math.log(m) == pytest.approx(float(exact_value.detach()), abs=tolerance)
    estimate = parameter_grad(model, value)
    assert torch.allclose(estimate, exact, atol=tolerance), (estimate, exact)


def test_gaussian_minimiser_is_the_data_gaussian():
    """Minimised over μ and the Cholesky factor of P from far away, the closed form ends at the
    data Gaussian, μ = m and P = Σ⁻¹."""
    model = QuadraticEnergy(data_shape=(2,)).double()
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        value = exact_gaussian_ed(model.mean, model.precision(), 0.8)
        value.backward()
        return value

    optimizer.step(objective)
    with torch.no_grad():
        assert model.mean.tolist() == pytest.approx(DATA_MEAN.tolist(), abs=1e-4)
        assert model.precision().flatten().tolist() == pytest.approx(torch.linalg.inv(DATA_COV).flatten().tolist(), abs=1e-4)


# -- the Bernoulli perturbation ---------------------------------------------------------------
STATES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)


class Boltzmann(Energy):
    """A fully visible Boltzmann machine on 3 bits: E(x) = −bᵀx − Σ_{i<j} W_ij x_i x_j."""

    def __init__(self, bias, pairs):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(bias, dtype=torch.float64))
        self.pairs = torch.nn.Parameter(torch.tensor(pairs, dtype=torch.float64))

    def forward(self, x, cond=None):
        w = torch.zeros(3, 3, dtype=x.dtype)
        w = w.index_put((torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])), self.pairs)
        return -(x @ self.bias) - ((x @ w) * x).sum(1)


TRUE_BIAS, TRUE_PAIRS = [0.5, -1.0, 0.2], [1.0, -0.5, 0.8]


def data_probabilities() -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(-Boltzmann(TRUE_BIAS, TRUE_PAIRS)(STATES), 0)


def exact_bernoulli_ed(energy, eps: float) -> torch.Tensor:
    """E_p[U(x)] − E_y[U_ε(y)] by enumeration: Q[y, x] = ε^h (1 − ε)^(3 − h), h the Hamming distance,
    U_ε(y) = −log Σ_x Q[y, x] exp(−U(x)), y ~ Q p."""
    h = torch.cdist(STATES, STATES, p=1)
    log_q = h * math.log(eps) + (3 - h) * math.log(1 - eps)
    p, u = data_probabilities(), energy(STATES)
    u_smoothed = -torch.logsumexp(log_q - u[None, :], dim=1)
    return (p * u).sum() - ((log_q.exp() @ p) * u_smoothed).sum()


def bernoulli_data(n: int, seed: int = 0) -> torch.Tensor:
    index = torch.multinomial(data_probabilities(), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return STATES[index]


def test_bernoulli_flip_draws_binary_flips_with_probability_eps():
    x = bernoulli_data(20000)
    y = seeded(0, lambda: BernoulliFlip(0.1).diffuse(x))
    assert bool(((y == 0) | (y == 1)).all())
    assert float((y != x).double().mean()) == pytest.approx(0.1, abs=0.005)
    back = seeded(1, lambda: BernoulliFlip(0.1).backward_proposals(y[:3], 4))
    assert back.shape == (12, 3) and torch.equal(back[:4].round(), back[:4])  # grouped by row of y


def test_bernoulli_gradient_is_the_exact_energy_discrepancy():
    """w = 0, M = 64, 8 000 data points: gradient and value minus log M within 0.025 of the closed
    form by enumeration (over five seeds the largest gradient error was 0.012)."""
    eps, m, tolerance = 0.1, 64, 0.025
    start = ([-1.0, 1.0, 0.5], [-1.0, 1.0, -1.0])
    model = Boltzmann(*start)
    exact_value = exact_bernoulli_ed(model, eps)
    exact = parameter_grad(model, exact_value)
    # The test tells ε from ε/2 and 2ε: their gradients differ by 0.068 and 0.093.
    for wrong_eps in (eps / 2, 2 * eps):
        assert (exact - parameter_grad(model, exact_bernoulli_ed(model, wrong_eps))).abs().max() > 2.5 * tolerance

    loss = EnergyDiscrepancy(perturbation="bernoulli", flip_prob=eps, num_particles=m, stabilizer=0.0)
    value = seeded(1, lambda: loss(TrainBatch(model, bernoulli_data(8000))).value)
    assert float(value.detach()) - math.log(m) == pytest.approx(float(exact_value.detach()), abs=tolerance)
    estimate = parameter_grad(model, value)
    assert torch.allclose(estimate, exact, atol=tolerance), (estimate, exact)


def test_bernoulli_minimiser_is_the_data_distribution():
    model = Boltzmann([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        value = exact_bernoulli_ed(model, 0.15)
        value.backward()
        return value

    optimizer.step(objective)
    assert model.bias.tolist() == pytest.approx(TRUE_BIAS, abs=1e-4)
    assert model.pairs.tolist() == pytest.approx(TRUE_PAIRS, abs=1e-4)


# -- the component ----------------------------------------------------------------------------
@pytest.mark.parametrize("params", [{}, {"perturbation": "bernoulli", "flip_prob": 0.1}, {"stabilizer": 0.0}])
def test_the_term_keeps_the_loss_contract(params):
    assert check_component("loss", "energy_discrepancy", params) == ["shapes", "gradients", "detaching", "determinism"]
    check_component("loss", "energy_discrepancy", params, dataset=Points(num_classes=3))


@pytest.mark.parametrize("params,message", [
    ({"flip_prob": 0.5}, "flip_prob must be in"),
    ({"t_noise": 0.0}, "t_noise"),
    ({"num_particles": 0}, "num_particles"),
    ({"perturbation": "laplace"}, "perturbation"),
])
def test_parameters_are_checked(params, message):
    with pytest.raises(RecipeError, match=message):
        check_component("loss", "energy_discrepancy", params)
