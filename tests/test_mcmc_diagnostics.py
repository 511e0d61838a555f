"""MCMC diagnostics: ESS and R-hat through ArviZ, and the three evaluators on a tiny energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmkit import EbmkitError
from ebmkit._host.data import chain_starts
from ebmkit._host.protocols import EvalContext
from ebmkit.plugins.mcmc.chain import Chain, Scheduled
from ebmkit.plugins.mcmc.chain_trace import ChainTrace
from ebmkit.plugins.mcmc.diagnostics import MCMCDiagnostics, ess_rhat, run_chains
from ebmkit.plugins.mcmc.energy_histogram import EnergyHistogram
from ebmkit.plugins.mcmc.hmc import HMC
from ebmkit.plugins.mcmc.langevin import Langevin
from ebmkit.plugins.mcmc.mala import MALA
from ebmkit.plugins.toy.gaussian import GaussianData, QuadraticEnergy

pytest.importorskip("arviz")


def ar1(chains: int, draws: int, phi: float, seed: int) -> np.ndarray:
    """AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi²) e_t, stationary N(0, 1), shape (chain, draw, 1)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((chains, draws))
    x = np.empty((chains, draws))
    x[:, 0] = noise[:, 0]
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + math.sqrt(1 - phi**2) * noise[:, t]
    return x[..., None]


def test_ess_of_iid_draws_is_close_to_their_number():
    draws = np.random.default_rng(0).standard_normal((4, 1000, 3))
    stats = ess_rhat(draws)
    assert stats["ess"].shape == (3,)
    assert np.all(np.abs(stats["ess"] / 4000 - 1) < 0.15)
    assert np.all(np.abs(stats["rhat"] - 1) < 0.01)


def test_ess_of_an_autocorrelated_chain_is_far_below_its_length():
    # phi = 0.95: integrated autocorrelation time (1 + phi) / (1 - phi) = 39, so ESS ~ 4000 / 39 ~ 100.
    stats = ess_rhat(ar1(4, 1000, 0.95, seed=1))
    assert 40 < stats["ess"][0] < 250


def test_rhat_flags_chains_stuck_apart_and_passes_mixed_ones():
    rng = np.random.default_rng(2)
    stuck = rng.standard_normal((4, 500, 2)) * 0.1 + np.array([-2.0, -1.0, 1.0, 2.0])[:, None, None]
    assert ess_rhat(stuck)["rhat"].min() > 1.5
    mixed = ar1(4, 1000, 0.5, seed=3)
    assert abs(ess_rhat(mixed)["rhat"][0] - 1) < 0.02


def test_ess_rhat_rejects_bad_shapes():
    with pytest.raises(EbmkitError, match="chain, draw, dim"):
        ess_rhat(np.zeros((10, 2)))
    with pytest.raises(EbmkitError, match="at least 2 chains"):
        ess_rhat(np.zeros((1, 100, 2)))


def test_run_chains_counts_gradients_and_follows_the_schedule():
    energy = QuadraticEnergy(data_shape=(2,))
    x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    sampler = Chain(steps=4, transitions=[MALA(step_size=0.1), HMC(step_size=0.1, leapfrog_steps=3)])
    record = run_chains(sampler, energy, x0, record_energy=True)
    assert record.x.shape == (4, 3, 2) and record.energy.shape == (4, 3)
    assert record.grad_evals == 4 * (2 + 4)  # MALA: 2 per step, HMC: L + 1
    assert 0 <= record.accept <= 1
    torch.testing.assert_close(record.energy[-1], energy(record.x[-1]).double().detach())
    every_other = Chain(steps=4, transitions=[Scheduled(MALA(step_size=0.1)), Scheduled(Langevin(step_size=0.1), every=2)])
    assert run_chains(every_other, energy, x0).grad_evals == 4 * 2 + 2 * 1


def test_run_chains_matches_the_samplers_own_chains():
    energy = QuadraticEnergy(data_shape=(2,))
    sampler = Chain(steps=5, transitions=[Langevin(step_size=0.05)])
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    expected = sampler.sample(energy, x0).x
    torch.manual_seed(7)
    torch.testing.assert_close(run_chains(sampler, energy, x0).x[-1], expected)


def test_a_sampler_without_steps_is_a_clear_error():
    class Opaque:
        def sample(self, energy, x0, *, cond=None, keep_graph=0): ...

    with pytest.raises(EbmkitError, match="chain sampler"):
        run_chains(Opaque(), QuadraticEnergy(data_shape=(2,)), torch.zeros(2, 2))


def test_parallel_tempering_is_not_recorded_as_an_untempered_chain():
    import ebmkit

    tempering = ebmkit.create("sampler", "parallel_tempering", steps=3, temperatures=[1.0, 4.0],
                              transitions=[{"name": "langevin", "step_size": 0.01}])
    with pytest.raises(EbmkitError, match="chain sampler"):
        run_chains(tempering, QuadraticEnergy(data_shape=(2,)), torch.zeros(2, 2))


def test_burn_in_must_leave_steps():
    with pytest.raises(ValueError, match="burn_in"):
        MCMCDiagnostics(steps=100, burn_in=98)


@pytest.fixture
def ctx(tmp_path):
    torch.manual_seed(0)
    dataset = GaussianData(dim=2, size=64)
    return EvalContext(
        energy=QuadraticEnergy(data_shape=(2,)), dataset=dataset,
        sampler=Chain(steps=20, transitions=[Langevin(step_size=0.05)]),
        noise=chain_starts((2,), None), out_dir=tmp_path, step=12, device=torch.device("cpu"),
    )


def test_energy_histogram_writes_its_plot(ctx):
    metrics = EnergyHistogram(num_samples=32).evaluate(ctx)
    assert (ctx.out_dir / "energy_histogram_step0000012.png").stat().st_size > 0
    assert {"data_energy_mean", "sample_energy_mean", "energy_gap"} <= metrics.keys()
    assert all(math.isfinite(v) for v in metrics.values())
    expected = float(ctx.energy(ctx.dataset.points[torch.randperm(64, generator=torch.Generator().manual_seed(0))[:32]]).mean().detach())
    assert metrics["data_energy_mean"] == pytest.approx(expected, rel=1e-5)


def test_chain_trace_writes_its_plot(ctx):
    metrics = ChainTrace(num_chains=3, steps=15).evaluate(ctx)
    assert (ctx.out_dir / "chain_trace_step0000012.png").stat().st_size > 0
    assert all(math.isfinite(v) for v in metrics.values())


def test_mcmc_diagnostics_on_a_known_gaussian(ctx):
    # The quadratic energy at its initial parameters is N(1, 4 I): MALA mixes in a few hundred steps.
    sampler = Chain(steps=600, transitions=[MALA(step_size=1.0)])
    metrics = MCMCDiagnostics(num_chains=4, steps=600, burn_in=100, sampler=sampler).evaluate(ctx)
    assert all(math.isfinite(v) for v in metrics.values())
    assert 100 < metrics["ess_bulk_min"] and metrics["rhat_max"] < 1.05
    assert metrics["ess_per_1000_grads"] == pytest.approx(1000 * metrics["ess_bulk_min"] / (4 * 500 * 2))
    assert 0 < metrics["accept"] < 1


def test_mcmc_diagnostics_flags_a_sampler_that_has_not_mixed(ctx):
    sampler = Chain(steps=200, transitions=[Langevin(step_size=1e-4)])
    metrics = MCMCDiagnostics(num_chains=4, steps=200, burn_in=0, sampler=sampler).evaluate(ctx)
    assert metrics["rhat_max"] > 1.1 and metrics["ess_bulk_min"] < 50


def test_missing_arviz_is_a_clear_error(ctx, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_arviz(name, *args, **kwargs):
        if name == "arviz":
            raise ImportError("No module named 'arviz'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_arviz)
    with pytest.raises(EbmkitError, match=r"pip install ebmkit\[diagnostics\]"):
        MCMCDiagnostics(num_chains=2, steps=10, burn_in=0).evaluate(ctx)
