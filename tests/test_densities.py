"""The 2-D densities: exact grid masses against samples, and the exact grid metrics."""

from __future__ import annotations

import math

import pytest
import torch

from ebmkit import Energy
from ebmkit.plugins.toy.densities import DENSITIES, Grid
from ebmkit.plugins.toy.density2d import grid_metrics

GRID = Grid(-4.0, 4.0, 100)


def coarse(p: torch.Tensor, factor: int = 5) -> torch.Tensor:
    n = int(math.isqrt(p.numel()))
    return p.reshape(n // factor, factor, n // factor, factor).sum((1, 3)).flatten()


@pytest.mark.parametrize("name", DENSITIES)
def test_grid_mass_matches_a_histogram_of_samples(name):
    density = DENSITIES[name]
    mass = density.grid_log_mass(GRID).exp()
    assert mass.sum().item() == pytest.approx(1.0, abs=1e-9)
    x = density.sample(200_000, torch.Generator().manual_seed(0)).double()
    inside = (x.abs() < 4).all(1)
    assert inside.float().mean() > 0.995
    hist = torch.bincount(GRID.cell_index(x[inside]), minlength=GRID.bins**2).double()
    tv = 0.5 * (coarse(mass) - coarse(hist / hist.sum())).abs().sum()
    # Sampling noise alone gives about 0.015 on 400 coarse cells with 200k samples.
    assert tv < 0.03, f"{name}: total variation {tv:.4f}"


@pytest.mark.parametrize("name", [n for n in DENSITIES if n != "pinwheel"])
def test_log_prob_integrates_to_one(name):
    # Every density's mass lies well inside [-4.8, 4.8]^2; cells of 0.08 put cell edges on the
    # checkerboard's squares. (A third of the points of a 200-cell grid over [-7, 7]: the
    # spirals' quadrature costs seconds.)
    fine = Grid(-4.8, 4.8, 120)
    total = DENSITIES[name].log_prob(fine.centers()).exp().sum() * fine.cell_area
    assert total.item() == pytest.approx(1.0, abs=5e-3)


class TrueEnergy(Energy):
    def __init__(self, density):
        super().__init__()
        self.density = density

    def forward(self, x, cond=None):
        return -self.density.log_prob(x).clamp_min(-1e4).to(x.dtype)


@pytest.mark.parametrize("name", ["8gaussians", "rings", "moons"])
def test_grid_metrics_are_zero_kl_for_the_true_density_and_positive_otherwise(name):
    density = DENSITIES[name]
    test = density.sample(2000, torch.Generator().manual_seed(1))
    exact = grid_metrics(TrueEnergy(density), density, GRID, test, torch.device("cpu"))
    assert exact["grid_kl"] == pytest.approx(0.0, abs=1e-6)
    assert exact["grid_nll"] == pytest.approx(exact["grid_nll_true"], abs=0.02)

    class Flat(Energy):
        def forward(self, x, cond=None):
            return torch.zeros(x.shape[0])

    flat = grid_metrics(Flat(), density, GRID, test, torch.device("cpu"))
    # A flat model on [-4, 4]^2 has KL = log(64) - H(data on the grid) and NLL = log(64).
    assert flat["grid_nll"] == pytest.approx(math.log(64.0), abs=1e-9)
    assert flat["grid_kl"] > 0.5


def test_datasets_are_deterministic_in_their_seed(registries):
    build = registries.get("datasets", "moons").build
    a, b, c = build({"size": 100, "seed": 3}), build({"size": 100, "seed": 3}), build({"size": 100, "seed": 4})
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)
    assert a.sample_shape == (2,) and a.domain == (-4.0, 4.0)
