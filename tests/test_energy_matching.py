"""Energy Matching (Balcerak et al., NeurIPS 2025): the flow-matching term against the closed form
of a Gaussian-to-Gaussian transport, the minibatch optimal transport, the contrastive term's
stabilisers against their definitions, the sampler's steps, and a second phase started from a
first run's weights ([train].init_from)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import ebmkit
from ebmkit import Energy, TrainBatch
from ebmkit._engine.loop import train
from ebmkit._recipes.recipe import load
from ebmkit.plugins.energy_matching.contrastive import EnergyMatchingCD, trimmed_mean
from ebmkit.plugins.energy_matching.flow_matching import FlowMatching
from ebmkit.plugins.energy_matching.ot_pairs import optimal_assignment, ot_pairs
from ebmkit.plugins.energy_matching.sampler import EnergyMatchingSampler
from ebmkit.plugins.energy_matching.schedule import TemperatureSchedule, flow_weight
from tests.conftest import RECIPES

EPSILON = 0.15


class QuadraticPotential(Energy):
    """V(x) = −(α·x + β·x²/2) in one dimension, as an ebmkit energy E = V/ε: velocity −∇V = α + β·x."""

    def __init__(self, alpha: float, beta: float, epsilon: float = EPSILON):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(alpha, dtype=torch.float64))
        self.beta = torch.nn.Parameter(torch.tensor(beta, dtype=torch.float64))
        self.epsilon = epsilon

    def forward(self, x, cond=None):
        x = x[:, 0]
        return -(self.alpha * x + self.beta * x**2 / 2) / self.epsilon


def closed_form_loss(alpha, beta, m: float, s: float):
    """E_t E_x0 (α + β·x_t − u)² for the optimal transport of N(0, 1) onto N(m, s²): x₁ = m + s·x₀,
    x_t = t·m + (1 + t(s − 1))·x₀, u = m + (s − 1)·x₀, t ~ U(0, 1). Averaging over x₀ leaves
    (c₁ + d₁t)² + (c₂ + d₂t)², and ∫₀¹ (c + dt)² dt = c² + cd + d²/3."""
    c1, d1 = alpha - m, beta * m
    c2, d2 = beta - (s - 1), beta * (s - 1)
    return c1**2 + c1 * d1 + d1**2 / 3 + c2**2 + c2 * d2 + d2**2 / 3


def optimal_velocity(m: float, s: float) -> tuple[float, float]:
    """The minimiser (α*, β*) of the closed form: the best time-independent linear velocity α + β·x."""
    beta = (s**2 - 1) / (m**2 / 6 + 2 * s + 2 * (s - 1) ** 2 / 3)
    return m - beta * m / 2, beta


def quadrature_loss(loss: FlowMatching, energy, m: float, s: float, nodes: int = 6):
    """The implementation's per-pair errors averaged exactly over x₀ ~ N(0, 1) (Gauss–Hermite) and
    t ~ U(0, 1) (Gauss–Legendre): the integrand is a polynomial of low degree in both."""
    x, wx = np.polynomial.hermite_e.hermegauss(nodes)
    t, wt = np.polynomial.legendre.leggauss(nodes)
    x0, t = np.meshgrid(x, (t + 1) / 2, indexing="ij")
    weights = np.outer(wx / math.sqrt(2 * math.pi), wt / 2)
    x0 = torch.tensor(x0.ravel())[:, None]
    t, weights = torch.tensor(t.ravel()), torch.tensor(weights.ravel())
    return (loss.per_sample(energy, x0, m + s * x0, t) * weights).sum()


@pytest.mark.parametrize(("m", "s"), [(2.0, 1.0), (1.5, 0.5), (-1.0, 2.0)])
def test_flow_matching_loss_and_gradient_are_the_closed_form_of_a_gaussian_transport(m, s):
    loss = FlowMatching(temperature=EPSILON, coupling="independent")
    for alpha, beta in [(0.0, 0.0), (0.7, -0.3), optimal_velocity(m, s)]:
        energy = QuadraticPotential(alpha, beta)
        value = quadrature_loss(loss, energy, m, s)
        got = torch.autograd.grad(value, [energy.alpha, energy.beta])
        a, b = torch.tensor(alpha, dtype=torch.float64, requires_grad=True), torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        exact = closed_form_loss(a, b, m, s)
        expected = torch.autograd.grad(exact, [a, b])
        assert value.item() == pytest.approx(exact.item(), rel=1e-12, abs=1e-12)
        for g, e in zip(got, expected, strict=True):
            assert g.item() == pytest.approx(e.item(), rel=1e-10, abs=1e-10)
    # At the closed-form minimiser the implemented loss has zero gradient: it is the minimiser.
    energy = QuadraticPotential(*optimal_velocity(m, s))
    grads = torch.autograd.grad(quadrature_loss(loss, energy, m, s), [energy.alpha, energy.beta])
    assert all(abs(g.item()) < 1e-10 for g in grads)
    if s == 1.0:  # a translation: the potential is the exact transport, −∇V = m everywhere, at zero loss
        assert optimal_velocity(m, s) == (m, 0.0)
        assert quadrature_loss(loss, energy, m, s).item() == pytest.approx(0.0, abs=1e-20)


def independent_optimum(m: float, s: float) -> tuple[float, float]:
    """The same minimiser when x₁ ~ N(m, s²) is drawn independently of x₀ (no transport plan):
    the regression of u = x₁ − x₀ on x_t, β = Cov(x_t, u)/Var(x_t)."""
    beta = (s**2 - 1) / 2 / (m**2 / 12 + (1 + s**2) / 3)
    return m - beta * m / 2, beta


@pytest.mark.parametrize(("coupling", "optimum"), [("ot", optimal_velocity), ("independent", independent_optimum)])
def test_training_the_term_reaches_the_closed_form_minimiser_of_its_coupling(coupling, optimum):
    """The whole term, as a run calls it (noise, minibatch OT pairs drawn from the plan, random
    times), trained by Adam on batches of N(m, s²): the potential's velocity lands on the closed-form
    optimum of the exact transport, and without the plan on the other optimum (β −0.62, not −0.49)."""
    torch.manual_seed(0)
    m, s = 1.5, 0.5
    energy = QuadraticPotential(0.0, 0.0)
    loss = FlowMatching(temperature=EPSILON, coupling=coupling)
    optimizer = torch.optim.Adam(energy.parameters(), lr=0.03)
    trail = []
    for step in range(400):
        x1 = m + s * torch.randn(64, 1, dtype=torch.float64)
        value = loss(TrainBatch(energy=energy, x_pos=x1)).value
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        if step >= 250:
            trail.append((energy.alpha.item(), energy.beta.item()))
    alpha, beta = np.mean(trail, axis=0)
    expected = optimum(m, s)
    assert alpha == pytest.approx(expected[0], abs=0.03) and beta == pytest.approx(expected[1], abs=0.03), (alpha, beta, expected)
    assert abs(optimal_velocity(m, s)[1] - independent_optimum(m, s)[1]) > 0.1


def test_minibatch_ot_is_the_exact_assignment():
    generator = torch.Generator().manual_seed(0)
    # In one dimension the optimal transport is monotone: the k-th smallest noise goes to the k-th smallest datum.
    x0, x1 = torch.randn(64, 1, generator=generator), torch.randn(64, 1, generator=generator) * 3 + 1
    perm = optimal_assignment(x0, x1)
    assert torch.equal(x1[perm][x0[:, 0].argsort(), 0], x1[:, 0].sort().values)
    # In two dimensions, against every permutation of a small batch.
    x0, x1 = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator)
    cost = lambda p: ((x0 - x1[list(p)]) ** 2).sum().item()  # noqa: E731
    best = min(cost(p) for p in itertools.permutations(range(6)))
    assert cost(optimal_assignment(x0, x1).tolist()) == pytest.approx(best, rel=1e-12)
    # Drawn with replacement from the plan, as torchcfm does: every pair drawn is one of the plan's.
    i, j = ot_pairs(x0, x1, resample=True, generator=generator)
    perm = optimal_assignment(x0, x1)
    assert torch.equal(perm[i], j) and len(i) == 6
    i, j = ot_pairs(x0, x1, resample=False)
    assert torch.equal(i, torch.arange(6)) and torch.equal(j, perm)


def test_the_temperature_schedule_and_the_flow_weight_follow_their_definitions():
    schedule = TemperatureSchedule(epsilon_max=0.15, tau_star=0.8)
    t = torch.tensor([0.0, 0.5, 0.8, 0.9, 1.0, 2.5], dtype=torch.float64)
    assert schedule(t).tolist() == pytest.approx([0.0, 0.0, 0.0, 0.075, 0.15, 0.15])
    sharp = TemperatureSchedule(epsilon_max=0.01, tau_star=1.0)  # the CIFAR-10 configuration
    assert sharp(torch.tensor([0.0, 0.99, 1.0, 3.25])).tolist() == pytest.approx([0.0, 0.0, 0.01, 0.01])
    assert flow_weight(t, 0.8).tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0, 0.0])
    assert flow_weight(t, 1.0).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="tau_star"):
        TemperatureSchedule(epsilon_max=0.1, tau_star=1.5)


def test_the_trimmed_mean_leaves_out_the_highest_negative_energies():
    values = torch.tensor([5.0, -1.0, 3.0, 10.0, 0.0, 2.0, 7.0, 1.0, 4.0, 6.0])
    assert trimmed_mean(values, 0.1).item() == pytest.approx((values.sum() - 10.0).item() / 9)
    assert trimmed_mean(values, 0.25).item() == pytest.approx((values.sum() - 10.0 - 7.0).item() / 8)  # ⌊2.5⌋ = 2 left out
    assert trimmed_mean(values, 0.0).item() == pytest.approx(values.mean().item())
    assert trimmed_mean(values[:5], 0.1).item() == pytest.approx(values[:5].mean().item())  # ⌊0.5⌋ = 0


def test_the_contrastive_term_is_the_clamped_scaled_difference_of_potentials():
    term = EnergyMatchingCD(temperature=0.5, cd_weight=0.1, trim_fraction=0.25, clamp=0.02)
    e_pos = torch.tensor([1.0, 2.0, 3.0, 2.0], requires_grad=True)
    e_neg = torch.tensor([0.5, 8.0, 1.5, 1.0], requires_grad=True)
    value = term(_batch(e_pos, e_neg)).value
    # V = 0.5·E; mean V+ = 1.0; V- without the highest (8.0) = 0.5·mean(0.5, 1.5, 1.0) = 0.5
    assert value.item() == pytest.approx(0.1 * (1.0 - 0.5))
    value.backward()
    assert e_pos.grad.tolist() == pytest.approx([0.1 * 0.5 / 4] * 4)
    assert e_neg.grad.tolist() == pytest.approx([-0.1 * 0.5 / 3, 0.0, -0.1 * 0.5 / 3, -0.1 * 0.5 / 3])  # the trimmed one pulls nothing
    # Clamped below at -β: once the data sit far enough below the samples the term stops pushing.
    e_pos = torch.tensor([-10.0, -10.0, -10.0, -10.0], requires_grad=True)
    out = term(_batch(e_pos, torch.zeros(4)))
    assert out.value.item() == pytest.approx(-0.02) and out.metrics["em_cd/clamped"].item() == 1.0
    out.value.backward()
    assert e_pos.grad.abs().sum().item() == 0.0
    assert EnergyMatchingCD(temperature=0.5, cd_weight=0.1, clamp=None)(_batch(e_pos, torch.zeros(4))).value.item() == pytest.approx(-0.5)


def _batch(e_pos: torch.Tensor, e_neg: torch.Tensor) -> TrainBatch:
    batch = TrainBatch(energy=None, x_pos=torch.zeros(len(e_pos), 1), x_neg=torch.zeros(len(e_neg), 1))
    batch._cache.update({"pos": e_pos, "neg": e_neg})
    return batch


class Harmonic(Energy):
    """E(x) = ‖x‖²/(2σ²)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, x, cond=None):
        return x.flatten(1).pow(2).sum(1) / (2 * self.sigma**2)


def test_heun_without_noise_is_the_second_order_step_of_the_flow():
    """Before τ* the dynamics are the ODE dx = −ε∇E dt; for E = x²/(2σ²) one Heun step multiplies x by
    1 − h + h²/2 with h = ε·dt/σ², and Euler's by 1 − h."""
    x0 = torch.randn(5, 3, dtype=torch.float64)
    sigma, dt = 0.5, 0.05
    h = EPSILON * dt / sigma**2
    for method, factor in [("heun", 1 - h + h * h / 2), ("euler", 1 - h)]:
        sampler = EnergyMatchingSampler(temperature=EPSILON, tau_star=1.0, dt=dt, t_end=0.5, method=method, given_starts=1.0)
        out = sampler.sample(Harmonic(sigma), x0)
        torch.testing.assert_close(out.x, x0 * factor**10, rtol=1e-12, atol=0)
        assert len(out.trace["energy"]) == 10 and out.trace["temperature"] == [0.0] * 10


def test_past_t_1_the_sampler_draws_the_models_boltzmann_density():
    """From t = 1 the chains run Langevin on E with step ε·dt. For E = x²/(2σ²), Euler–Maruyama's
    stationary variance is σ²/(1 − h/2), h = ε·dt/σ² (exact for the discretised chain); Heun's is σ² to O(h²)."""
    torch.manual_seed(0)
    sigma, dt = 1.0, 0.5
    h = EPSILON * dt / sigma**2
    chains = torch.zeros(4000, 2)
    for method, variance in [("euler", sigma**2 / (1 - h / 2)), ("heun", sigma**2)]:
        sampler = EnergyMatchingSampler(temperature=EPSILON, tau_star=0.0, dt=dt, t_end=150.0, method=method, given_starts=1.0)
        x = sampler.sample(Harmonic(sigma), chains).x
        # 8000 draws: the variance's standard error is about 1.6 %
        assert x.var().item() == pytest.approx(variance, rel=0.06), method
    assert sigma**2 / (1 - h / 2) > 1.03  # the two differ by more than the tolerance allows to confuse them


def test_given_starts_and_clamp():
    class Flat(Energy):
        def forward(self, x, cond=None):
            return 0 * x.flatten(1).sum(1)

    x0 = torch.full((10, 2), 3.0)
    out = EnergyMatchingSampler(temperature=0.1, t_end=0.01, given_starts=0.5).sample(Flat(), x0).x
    assert torch.equal(out[:5], x0[:5]) and not (out[5:] == 3.0).any()  # the rest start at N(0, I)
    out = EnergyMatchingSampler(temperature=0.1, t_end=0.01, clamp=(-1.0, 1.0)).sample(Flat(), x0).x
    assert out.abs().max() <= 1.0
    with pytest.raises(ebmkit.EbmkitError, match="keeps no graph"):
        EnergyMatchingSampler(temperature=0.1).sample(Flat(), x0, keep_graph=1)
    with pytest.raises(ValueError, match="less than one step"):
        EnergyMatchingSampler(temperature=0.1, dt=0.1, t_end=0.01)


TINY = ["energy.hidden=16", "train.batch_size=32", "train.log_every=1", "evaluators=[]", "data.size=512"]
PHASE_2 = TINY + ["sampler.dt=0.5", "sampler.t_end=2.0"]


def test_a_second_phase_starts_from_the_first_runs_weights_and_resumes_exactly(tmp_path, run_cli):
    warmup, straight, split = tmp_path / "warmup", tmp_path / "straight", tmp_path / "split"
    train(load(RECIPES / "energy_matching_8gaussians_warmup.toml", TINY + ["train.steps=4"]), warmup, live=False)
    source = [f'train.init_from="{warmup}"']
    # Step 0 of the second phase holds the first phase's weights, EMA and optimizer moments.
    train(load(RECIPES / "energy_matching_8gaussians.toml", PHASE_2 + source + ["train.steps=0"]), tmp_path / "start", live=False)
    first, start = warmup / "checkpoints" / "step_0000004", tmp_path / "start" / "checkpoints" / "step_0000000"
    for name in ("energy.safetensors", "ema.safetensors", "state.safetensors"):
        ours, theirs = _tensors(start / name), _tensors(first / name)
        moments = [k for k in theirs if "optimizer" in k and "exp_avg" in k] if name == "state.safetensors" else list(theirs)
        assert moments and all(torch.equal(ours[k], theirs[k]) for k in moments), name
    # A second phase stopped and resumed equals one run straight through, bit for bit.
    train(load(RECIPES / "energy_matching_8gaussians.toml", PHASE_2 + source + ["train.steps=4"]), straight, live=False)
    train(load(RECIPES / "energy_matching_8gaussians.toml", PHASE_2 + source + ["train.steps=2", "train.checkpoint_every=2"]), split, live=False)
    assert run_cli("run", "--resume", str(split), "--set", "train.steps=4").exit_code == 0
    for name in ("energy.safetensors", "ema.safetensors"):
        a, b = (_tensors(run / "checkpoints" / "step_0000004" / name) for run in (straight, split))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # ebmkit.load knows the whole history: the warm-up, then this run.
    history = ebmkit.load(split).history
    assert [h["run"] for h in history] == [str(warmup.resolve()), str(split.resolve())]
    assert [h["step"] for h in history] == [4, 4]
    assert [h["recipe"]["losses"][0]["name"] for h in history] == ["flow_matching", "flow_matching"]
    assert [len(h["recipe"]["losses"]) for h in history] == [1, 2]
    assert ebmkit.load(warmup).history[0]["run"] == str(warmup.resolve())
    started = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines() if "init_from" in line]
    assert len(started) == 1 and str(first.resolve()) in started[0]["message"]


def test_init_from_refuses_a_missing_run_and_another_energy(tmp_path, run_cli):
    phase_2 = str(RECIPES / "energy_matching_8gaussians.toml")
    small = ["--set", "energy.hidden=16", "--set", "train.steps=1", "--set", "evaluators=[]"]
    result = run_cli("run", phase_2, *small, "--set", f'train.init_from="{tmp_path / "nowhere"}"', "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "init_from" in result.output and "nowhere" in result.output
    train(load(RECIPES / "energy_matching_8gaussians_warmup.toml", TINY + ["train.steps=1"]), tmp_path / "warmup", live=False)
    result = run_cli("run", phase_2, *small, "--set", "energy.hidden=32", "--set", f'train.init_from="{tmp_path / "warmup"}"',
                     "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "another energy" in result.output and "hidden" in result.output, result.output
    assert "Traceback" not in result.output
    # validate builds the second phase without its source, and says the source is still to be trained
    result = run_cli("validate", phase_2, "--set", f'train.init_from="{tmp_path / "nowhere"}"')
    assert result.exit_code == 0 and "is not here yet" in result.output


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_the_noise_comes_in_with_the_schedule_and_heun_averages_the_two_ends_of_a_step():
    """With no drift (a flat energy) the samples' variance is the noise alone. τ* = 1, dt = 0.5:
    Euler–Maruyama adds √(2ε(t)dt)ξ at t = 0 and 0.5 (ε = 0) and at t = 1 (ε); Heun's step from
    0.5 to 1 adds ½(g(0.5) + g(1))ΔW = ½√(2ε)·√dt·ξ."""
    class Flat(Energy):
        def forward(self, x, cond=None):
            return 0 * x.flatten(1).sum(1)

    torch.manual_seed(0)
    x0 = torch.zeros(20000, 1)
    common = dict(temperature=EPSILON, tau_star=1.0, dt=0.5, given_starts=1.0)
    for method, t_end, variance in [("euler", 1.0, 0.0), ("euler", 1.5, 2 * EPSILON * 0.5),
                                    ("heun", 0.5, 0.0), ("heun", 1.0, 0.25 * 2 * EPSILON * 0.5)]:
        x = EnergyMatchingSampler(method=method, t_end=t_end, **common).sample(Flat(), x0).x
        assert x.var().item() == pytest.approx(variance, rel=0.05, abs=1e-12), (method, t_end)


def test_the_cifar10_recipe_validates_away_from_its_data(run_cli, tmp_path, monkeypatch):
    """The second phase (the warm-up's tables and more; both pass a tiny smoke run in test_recipes_smoke.py)."""
    name = "energy_matching_cifar10"
    monkeypatch.chdir(tmp_path)  # no data/cifar10 and no warm-up run here
    result = run_cli("validate", "--no-data", name)
    assert result.exit_code == 0 and f"{name}: OK" in result.output and "the data was not read" in result.output, result.output
    recipe = load(RECIPES / f"{name}.toml")
    assert recipe.run.world_size == 4 and recipe.train.batch_size == 128 and recipe.one("optim").values["lr"] == 1.2e-3
