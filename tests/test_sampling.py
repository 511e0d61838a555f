"""ebmkit.sample against an exact answer: exact Langevin on a Gaussian target."""

from __future__ import annotations

import pytest
import torch

import ebmkit
from ebmkit import EbmkitError, Energy


class Gaussian(Energy):
    """E(x) = ½ (x−μ)ᵀ Σ⁻¹ (x−μ)."""

    def __init__(self, mean, cov):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("precision", torch.linalg.inv(torch.tensor(cov)))

    def forward(self, x, cond=None):
        d = x - self.mean
        return 0.5 * torch.einsum("bi,ij,bj->b", d, self.precision, d)


def test_exact_langevin_matches_a_correlated_gaussian():
    mean, cov = [1.0, -2.0], [[1.0, 0.6], [0.6, 0.5]]
    x = ebmkit.sample(Gaussian(mean, cov), 4000, shape=(2,), sampler="langevin", steps=400, step_size=0.01, seed=0)
    # ULA's bias at this step is O(step) ≈ 1%; the Monte-Carlo error of 4000 chains about 2%.
    torch.testing.assert_close(x.mean(0), torch.tensor(mean), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), torch.tensor(cov), atol=0.06, rtol=0)


def test_temperature_scales_the_variance():
    x = ebmkit.sample(Gaussian([0.0], [[1.0]]), 4000, shape=(1,), sampler="langevin", steps=300, step_size=0.01,
                      temperature=4.0, seed=1)
    assert x.var().item() == pytest.approx(4.0, rel=0.1)


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    energy = Gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = ebmkit.sample(energy, 10, shape=(2,), sampler="langevin", steps=5, step_size=0.1, seed=7)
    assert torch.equal(before, torch.get_rng_state())
    b = ebmkit.sample(energy, 10, shape=(2,), sampler="langevin", steps=5, step_size=0.1, seed=7)
    assert torch.equal(a, b)


def test_params_are_routed_and_mistakes_are_named():
    energy = Gaussian([0.0], [[1.0]])
    result = ebmkit.sample(energy, 8, shape=(1,), sampler="langevin", steps=3, step_size=0.1, return_result=True)
    assert len(result.trace["energy"]) == 3
    with pytest.raises(EbmkitError, match="did you mean 'step_size'"):
        ebmkit.sample(energy, 8, shape=(1,), sampler="langevin", steps=3, stepsize=0.1)
    with pytest.raises(ebmkit.UnknownComponentError, match="sampler or transition 'langevn' - did you mean 'langevin'") as info:
        ebmkit.sample(energy, 8, shape=(1,), sampler="langevn", steps=3, step_size=0.1)
    registries = ebmkit.registries()
    names = sorted([*registries["samplers"], *registries["transitions"]])
    assert f"available samplers or transitions: {', '.join(names)}\n" in str(info.value)
