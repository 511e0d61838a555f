"""Diffusion contrastive divergence: both estimators against the exact DCD of Gaussians."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from ebmkit._host.errors import EbmkitError
from ebmkit._host.protocols import EvalContext, TrainBatch
from ebmkit._recipes.recipe import load
from ebmkit._engine.loop import train
from ebmkit.plugins.dcd.denoise import Denoise, psnr, tweedie_denoise
from ebmkit.plugins.dcd.kernels import GaussianKernel
from ebmkit.plugins.dcd.log_mean_exp import DCDLogMeanExp
from ebmkit.plugins.dcd.recovery import DCDRecovery
from ebmkit.plugins.mcmc.mala import MALA
from ebmkit.plugins.toy.gaussian import QuadraticEnergy

from tests.conftest import RECIPES


def gaussian_model() -> QuadraticEnergy:
    """N(μ, P⁻¹) with μ = (0.5, −0.3) and a non-diagonal precision P."""
    energy = QuadraticEnergy(data_shape=(2,))
    with torch.no_grad():
        energy.mean.copy_(torch.tensor([0.5, -0.3]))
        energy.lower[1, 0] = 0.3
        energy.raw_diagonal.copy_(torch.tensor([0.2, 0.9]))
    return energy


def exact_dcd(energy: QuadraticEnergy, kernel: GaussianKernel) -> torch.Tensor:
    """KL(p_d‖p_θ) − KL(Q p_d‖Q p_θ) for p_d = N(0, I): Q maps N(m, C) to N(αm, α²C + σ²I)."""
    cov = torch.cholesky_inverse(energy.cholesky())
    eye, zero = torch.eye(2), torch.zeros(2)
    a, s2 = kernel.alpha, kernel.sigma**2
    before = kl_divergence(MultivariateNormal(zero, eye), MultivariateNormal(energy.mean, cov))
    after = kl_divergence(MultivariateNormal(zero, (a * a + s2) * eye), MultivariateNormal(a * energy.mean, a * a * cov + s2 * eye))
    return before - after


def exact_kl(energy: QuadraticEnergy) -> torch.Tensor:
    cov = torch.cholesky_inverse(energy.cholesky())
    return kl_divergence(MultivariateNormal(torch.zeros(2), torch.eye(2)), MultivariateNormal(energy.mean, cov))


def parameter_grad(energy, value: torch.Tensor) -> torch.Tensor:
    energy.zero_grad()
    value.backward()
    return torch.cat([p.grad.flatten() for p in energy.parameters()])


def data_batch(energy, n: int = 32000, seed: int = 0) -> TrainBatch:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return TrainBatch(energy, x)


ESTIMATORS = {
    "log_mean_exp": lambda kernel, sigma: DCDLogMeanExp(sigma=sigma, kernel=kernel, num_particles=256, stabilizer=0.0),
    "recovery": lambda kernel, sigma: DCDRecovery(sigma=sigma, kernel=kernel, steps=50, transition=MALA(step_size=0.1)),
}


@pytest.mark.parametrize("kernel_kind,sigma", [("ve", 0.8), ("vp", 0.6)])
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_estimator_gradient_is_the_exact_dcd_gradient(estimator, kernel_kind, sigma):
    kernel = GaussianKernel(kernel_kind, sigma)
    model = gaussian_model()
    exact = parameter_grad(model, exact_dcd(model, kernel))
    plain_kl = parameter_grad(model, exact_kl(model))
    tolerance = 0.04  # Monte-Carlo error at 32000 data points is about 0.008
    # The test can tell DCD from maximum likelihood: their gradients differ by more than that.
    assert (exact - plain_kl).abs().max() > 3 * tolerance

    torch.manual_seed(1)
    model = gaussian_model()
    loss = ESTIMATORS[estimator](kernel_kind, sigma)
    estimate = parameter_grad(model, loss(data_batch(model)).value)
    assert torch.allclose(estimate, exact, atol=tolerance), (estimate, exact)


@pytest.mark.parametrize("kernel_kind,sigma", [("ve", 0.8), ("vp", 0.6)])
def test_log_mean_exp_value_is_dcd_up_to_the_known_constant(kernel_kind, sigma):
    """With w = 0, L → E U(x) − E U_t(y) + log M, and DCD = E U − E U_t + H(Q p_d) − H(p_d) (VE)
    or E U − E U_t shifted by the kernel's constant Jacobian α^(−d) (VP)."""
    kernel, m, d = GaussianKernel(kernel_kind, sigma), 256, 2
    torch.manual_seed(2)
    model = gaussian_model()
    value = DCDLogMeanExp(sigma=sigma, kernel=kernel_kind, num_particles=m, stabilizer=0.0)(data_batch(model)).value
    offset = d / 2 * math.log(1 + sigma**2) if kernel_kind == "ve" else -d * math.log(kernel.alpha)
    assert float(value.detach()) - math.log(m) + offset == pytest.approx(float(exact_dcd(model, kernel).detach()), abs=0.03)


def test_recovery_energy_l2_adds_the_squared_energies():
    model, x = gaussian_model(), torch.randn(64, 2)
    values = []
    for weight in (0.0, 0.5):
        torch.manual_seed(4)
        loss = DCDRecovery(sigma=0.5, steps=3, transition=MALA(step_size=0.01), energy_l2=weight)
        values.append(float(loss(TrainBatch(model, x)).value.detach()))
    torch.manual_seed(4)
    x_tilde = DCDRecovery(sigma=0.5, steps=3, transition=MALA(step_size=0.01)).recover(model, x)
    with torch.no_grad():
        expected = 0.5 * ((model(x) ** 2).mean() + (model(x_tilde) ** 2).mean())
    assert values[1] - values[0] == pytest.approx(float(expected), rel=1e-5)


def test_kernels_diffuse_with_the_stated_moments():
    x = torch.randn(200000, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    torch.manual_seed(1)  # not 0: the kernel's noise must be independent of x
    for kernel in (GaussianKernel("ve", 0.7), GaussianKernel("vp", 0.6)):
        y = kernel.diffuse(x)
        assert y.mean(0).tolist() == pytest.approx([kernel.alpha] * 2, abs=0.01)
        assert y.var(0).tolist() == pytest.approx([kernel.alpha**2 * 0.25 + kernel.sigma**2] * 2, rel=0.02)
    assert GaussianKernel("vp", 0.6).alpha == pytest.approx(0.8)  # unit variance stays unit variance
    with pytest.raises(ValueError, match="sigma < 1"):
        GaussianKernel("vp", 1.0)


def test_recovery_samples_the_exact_posterior():
    """1-D: prior N(m, s²), y = αx₀ + σε; x̃|y ~ N((m/s² + αy/σ²)/P, 1/P), P = 1/s² + α²/σ²."""
    energy = QuadraticEnergy(data_shape=(1,))
    with torch.no_grad():
        energy.mean.fill_(0.5)
        energy.raw_diagonal.fill_(math.log(math.expm1(1 / 0.8)))  # L = 1/s, s = 0.8
    s, sigma, x0 = 0.8, 0.6, -1.0
    loss = DCDRecovery(sigma=sigma, kernel="vp", steps=60, transition=MALA(step_size=0.05))
    alpha = loss_alpha = math.sqrt(1 - sigma**2)
    torch.manual_seed(3)
    x_tilde = loss.recover(energy, torch.full((40000, 1), x0))
    precision = 1 / s**2 + alpha**2 / sigma**2
    # Averaged over y ~ N(αx₀, σ²): the mean of the posterior means, and their spread added to 1/P.
    mean = (0.5 / s**2 + alpha * loss_alpha * x0 / sigma**2) / precision
    var = 1 / precision + (alpha / (sigma**2 * precision)) ** 2 * sigma**2
    assert float(x_tilde.mean()) == pytest.approx(mean, abs=0.015)
    assert float(x_tilde.var()) == pytest.approx(var, rel=0.04)


def test_tweedie_step_is_the_exact_posterior_mean_for_a_model_of_the_noisy_data():
    """Data N(0, I), noise σ: the noisy data is N(0, (1+σ²)I) and E[x|y] = y / (1 + σ²)."""
    sigma = 0.5
    noisy_model = QuadraticEnergy(data_shape=(2,))
    with torch.no_grad():
        noisy_model.mean.zero_()
        noisy_model.raw_diagonal.fill_(math.log(math.expm1(1 / math.sqrt(1 + sigma**2))))
    y = torch.randn(100, 2)
    assert torch.allclose(tweedie_denoise(noisy_model, y, sigma), y / (1 + sigma**2), atol=1e-6)


def test_denoise_evaluator_reports_the_psnr_of_the_exact_denoiser(tmp_path):
    from ebmkit.plugins.toy.gaussian import GaussianData

    sigma = 0.5
    dataset = GaussianData(dim=2, size=4000)
    noisy_model = QuadraticEnergy(data_shape=(2,))
    with torch.no_grad():
        noisy_model.mean.zero_()
        noisy_model.raw_diagonal.fill_(math.log(math.expm1(1 / math.sqrt(1 + sigma**2))))
    ctx = EvalContext(noisy_model, dataset, None, None, tmp_path, 0, torch.device("cpu"))
    evaluator = Denoise(sigma=sigma, num_samples=4000, data_range=1.0)
    metrics = evaluator.evaluate(ctx)
    # MSE of the noisy data is σ² and of the posterior mean σ²/(1+σ²) (the MMSE); PSNR = −10 log10 MSE.
    assert metrics["psnr_noisy"] == pytest.approx(-10 * math.log10(sigma**2), abs=0.15)
    assert metrics["psnr_denoised"] == pytest.approx(-10 * math.log10(sigma**2 / (1 + sigma**2)), abs=0.15)
    assert metrics["psnr_gain"] == pytest.approx(10 * math.log10(1 + sigma**2), abs=0.05)
    assert evaluator.evaluate(ctx) == metrics  # fixed data and noise: comparable across steps
    with pytest.raises(EbmkitError, match="data_range"):
        Denoise().evaluate(ctx)  # this dataset has no domain to take the peak from


def test_psnr():
    clean = torch.zeros(4, 3)
    assert psnr(clean + 0.1, clean, 1.0) == pytest.approx(20.0)
    assert psnr(clean, clean, 1.0) == math.inf


def test_mcmc_free_training_learns_8_gaussians_without_running_the_sampler(tmp_path, registries):
    recipe = load(
        RECIPES / "dcd_8gaussians.toml",
        ["train.steps=800", "train.log_every=100", "evaluators[0].every=0", "evaluators[0].plot=false"],
        registries,
    )
    result = train(recipe, tmp_path, live=False)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["density2d/grid_kl"], result.metrics["density2d/grid_kl"]
    assert first > 1.0 and last < 0.3 * first
    trained = [line for line in lines if "loss" in line]
    # No loss term needs negatives, so the sampler never ran in training.
    assert trained and all("e_neg" not in line and not any(k.startswith("sampler/") for k in line) for line in trained)


def test_recovery_estimator_trains_from_a_recipe(tmp_path, registries):
    recipe = load(RECIPES / "dcd_recovery_8gaussians.toml", ["train.steps=3", "train.log_every=1", "evaluators=[]"], registries)
    train(recipe, tmp_path, live=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [r["step"] for r in rows] == [1, 2, 3]
    # The posterior chains start at the diffused data (σ = 0.5 in 2-D: about 0.6 away) and stay near it.
    assert all(math.isfinite(r["loss"]) and 0.2 < r["dcd/recovery_distance"] < 2.0 for r in rows)
    assert all("e_neg" not in r for r in rows)  # the recipe's sampler is not run in training


def test_the_posterior_transition_is_required_and_checked_like_any_component(registries):
    import tomllib

    from ebmkit._host.errors import RecipeError
    from ebmkit._recipes.recipe import validate

    data = tomllib.loads((RECIPES / "dcd_recovery_8gaussians.toml").read_text())
    del data["losses"][0]["transition"]
    with pytest.raises(RecipeError, match="missing required parameter 'transition'"):
        validate(data, registries=registries)
    with pytest.raises(RecipeError, match=r"transition\.step_siz"):
        load(RECIPES / "dcd_recovery_8gaussians.toml", ["losses[0].transition.step_siz=0.1"], registries)


def test_a_vp_kernel_with_sigma_of_1_or_more_is_a_recipe_error(registries):
    from ebmkit._host.errors import RecipeError

    with pytest.raises(RecipeError, match=r"losses\[0\]\.sigma: invalid value for loss 'dcd_log_mean_exp'.*sigma < 1"):
        load(RECIPES / "dcd_8gaussians.toml", ["losses[0].kernel=vp", "losses[0].sigma=1.0"], registries)
