"""The standard 2-D densities of the EBM and flow literature, with their exact densities.

Definitions follow FFJORD's ``toy_data.py`` (see docs/components.md). Each density can
sample and give its probability mass on a grid of cells: in closed form where one exists
(Gaussian mixtures, checkerboard, rings via the Bessel function I0), otherwise by
quadrature over the generating variables (moons, two spirals, pinwheel), accurate far
beyond the grid's resolution.
"""

from __future__ import annotations

import math

import attrs
import torch

Tensor = torch.Tensor
SQRT2 = 1.414  # FFJORD divides by this literal, not by sqrt(2)
LOG_2PI = math.log(2 * math.pi)


def _gauss_log_prob(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """log N(x; mean, std² I) in 2-D, broadcast over leading dims."""
    return -((x - mean) ** 2).sum(-1) / (2 * std**2) - LOG_2PI - 2 * math.log(std)


@attrs.frozen
class Grid:
    """A square grid of cells over [low, high]²; ``centers`` has shape (bins*bins, 2), row-major in y."""

    low: float = -4.0
    high: float = 4.0
    bins: int = 100

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.bins

    @property
    def cell_area(self) -> float:
        return self.width**2

    def axis(self) -> Tensor:
        return torch.linspace(self.low + self.width / 2, self.high - self.width / 2, self.bins, dtype=torch.float64)

    def centers(self) -> Tensor:
        ys, xs = torch.meshgrid(self.axis(), self.axis(), indexing="ij")
        return torch.stack([xs.flatten(), ys.flatten()], -1)

    def cell_index(self, x: Tensor) -> Tensor:
        """Flat cell index of each point (clamped to the grid)."""
        ij = ((x.double() - self.low) / self.width).floor().long().clamp(0, self.bins - 1)
        return ij[:, 1] * self.bins + ij[:, 0]


class Density2D:
    """A 2-D density: ``sample`` and, on a grid, normalised log cell masses."""

    name: str = ""
    summary: str = ""

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density (float64), where it has a closed form or a 1-D quadrature."""
        raise NotImplementedError

    def grid_log_mass(self, grid: Grid) -> Tensor:
        """log of the probability of each grid cell, normalised over the grid (shape bins²)."""
        log_density = self.log_prob(grid.centers())
        return log_density - torch.logsumexp(log_density, 0)


class GaussianMixture(Density2D):
    def __init__(self, name: str, summary: str, centers: Tensor, std: float):
        self.name, self.summary = name, summary
        self.centers, self.std = centers.double(), std

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        which = torch.randint(len(self.centers), (n,), generator=generator)
        return (self.centers[which] + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()

    def log_prob(self, x: Tensor) -> Tensor:
        logs = _gauss_log_prob(x.double()[:, None, :], self.centers[None], self.std)
        return torch.logsumexp(logs, 1) - math.log(len(self.centers))


def eight_gaussians() -> GaussianMixture:
    s = 1 / math.sqrt(2)
    unit = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)], dtype=torch.float64)
    return GaussianMixture("8gaussians", "8 Gaussians on a circle of radius 4/1.414, std 0.5/1.414", unit * 4 / SQRT2, 0.5 / SQRT2)


def twenty_five_gaussians() -> GaussianMixture:
    grid = torch.tensor([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float64)
    return GaussianMixture("25gaussians", "5x5 grid of Gaussians, spacing 2/1.414, std 0.2/1.414", grid / SQRT2, 0.2 / SQRT2)


class Rings(Density2D):
    name, summary = "rings", "4 concentric rings of radius 3, 2.25, 1.5, 0.75 with noise std 0.08"
    radii, std = (3.0, 2.25, 1.5, 0.75), 0.08

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        which = torch.randint(4, (n,), generator=generator)
        angle = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
        r = torch.tensor(self.radii, dtype=torch.float64)[which]
        x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], -1)
        return (x + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()

    def log_prob(self, x: Tensor) -> Tensor:
        # ∫ N(x; r u(θ), σ²I) dθ/2π = exp(−(|x|−r)²/2σ²) · i0e(r|x|/σ²) / (2πσ²)
        rho = x.double().norm(dim=-1, keepdim=True)
        r = torch.tensor(self.radii, dtype=torch.float64)
        s2 = self.std**2
        logs = -((rho - r) ** 2) / (2 * s2) + torch.log(torch.special.i0e(r * rho / s2)) - math.log(2 * math.pi * s2)
        return torch.logsumexp(logs, -1) - math.log(4)


class Moons(Density2D):
    name, summary = "moons", "two interleaving half circles (scikit-learn's make_moons), noise std 0.2"
    std, nodes = 0.2, 1000

    @staticmethod
    def _curve(t: Tensor, lower: Tensor) -> Tensor:
        outer = torch.stack([torch.cos(t), torch.sin(t)], -1)
        inner = torch.stack([1 - torch.cos(t), 1 - torch.sin(t) - 0.5], -1)
        raw = torch.where(lower[..., None], inner, outer)
        return raw * 2 + torch.tensor([-1.0, -0.2], dtype=raw.dtype)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        t = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
        lower = torch.rand(n, generator=generator) < 0.5
        x = self._curve(t, lower)
        return (x + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()

    def log_prob(self, x: Tensor) -> Tensor:
        t = (torch.arange(self.nodes, dtype=torch.float64) + 0.5) * math.pi / self.nodes
        means = torch.cat([self._curve(t, torch.zeros_like(t, dtype=torch.bool)), self._curve(t, torch.ones_like(t, dtype=torch.bool))])
        out = []
        for chunk in x.double().split(2048):
            out.append(torch.logsumexp(_gauss_log_prob(chunk[:, None, :], means[None], self.std), 1) - math.log(len(means)))
        return torch.cat(out)


class Checkerboard(Density2D):
    name, summary = "checkerboard", "uniform on 8 of the 16 2x2 squares of [-4, 4]^2"

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        x1 = torch.rand(n, generator=generator) * 4 - 2
        x2 = torch.rand(n, generator=generator) - torch.randint(0, 2, (n,), generator=generator) * 2.0
        x2 = x2 + torch.floor(x1) % 2
        return torch.stack([x1, x2], -1) * 2

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.double()
        inside = (x.abs() < 4).all(-1)
        on = ((torch.floor(x[:, 0] / 2) + torch.floor(x[:, 1] / 2)) % 2 == 0) & inside
        return torch.where(on, torch.tensor(-math.log(32.0), dtype=torch.float64), torch.tensor(-math.inf, dtype=torch.float64))


class TwoSpirals(Density2D):
    name, summary = "2spirals", "two interleaved spirals, uniform jitter 0.5/3 and noise std 0.1"
    std, nodes = 0.1, 1500
    turn = 540 * 2 * math.pi / 360

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        m = n // 2 + n % 2
        t = torch.sqrt(torch.rand(m, 1, generator=generator, dtype=torch.float64)) * self.turn
        dx = -torch.cos(t) * t + torch.rand(m, 1, generator=generator, dtype=torch.float64) * 0.5
        dy = torch.sin(t) * t + torch.rand(m, 1, generator=generator, dtype=torch.float64) * 0.5
        d = torch.cat([dx, dy], -1)
        x = torch.cat([d, -d])[:n] / 3
        return (x + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()

    def log_prob(self, x: Tensor) -> Tensor:
        # t = sqrt(u)·turn has density 2t/turn²; per axis, (c + U(0, 0.5))/3 + N(0, σ²) has a closed form.
        normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
        t = (torch.arange(self.nodes, dtype=torch.float64) + 0.5) * self.turn / self.nodes
        weights = 2 * t / self.turn**2 * (self.turn / self.nodes)
        centers = torch.stack([-torch.cos(t) * t, torch.sin(t) * t], -1) / 3
        width = 0.5 / 3
        out = []
        for chunk in x.double().split(1024):
            xs = chunk[:, None, :]
            pos = (normal.cdf((xs - centers) / self.std) - normal.cdf((xs - centers - width) / self.std)) / width
            neg = (normal.cdf((xs + centers + width) / self.std) - normal.cdf((xs + centers) / self.std)) / width
            density = 0.5 * (pos.prod(-1) + neg.prod(-1)) @ weights
            out.append(torch.log(density))
        return torch.cat(out)


class Pinwheel(Density2D):
    name, summary = "pinwheel", "5 curved arms (radial std 0.3, tangential std 0.1, rate 0.25)"
    radial, tangential, arms, rate = 0.3, 0.1, 5, 0.25

    def _map(self, features: Tensor, arm: Tensor) -> Tensor:
        features = features.clone()
        features[:, 0] += 1
        angles = arm * 2 * math.pi / self.arms + self.rate * torch.exp(features[:, 0])
        c, s = torch.cos(angles), torch.sin(angles)
        rotations = torch.stack([c, -s, s, c], -1).reshape(-1, 2, 2)
        return 2 * torch.einsum("ti,tij->tj", features, rotations)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        features = torch.randn(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([self.radial, self.tangential], dtype=torch.float64)
        arm = torch.randint(self.arms, (n,), generator=generator).double()
        return self._map(features, arm).float()

    def grid_log_mass(self, grid: Grid, nodes: int = 1200) -> Tensor:
        # No closed form: push a fine Gauss-weighted quadrature of the generating variables onto the cells.
        u = (torch.arange(nodes, dtype=torch.float64) + 0.5) / nodes * 12 - 6
        w = torch.exp(-0.5 * u**2)
        a, b = torch.meshgrid(u * self.radial, u[::4] * self.tangential, indexing="ij")
        weight = (w[:, None] * w[::4][None, :]).flatten()
        features = torch.stack([a.flatten(), b.flatten()], -1)
        mass = torch.zeros(grid.bins**2, dtype=torch.float64)
        for arm in range(self.arms):
            x = self._map(features, torch.full((len(features),), float(arm), dtype=torch.float64))
            inside = (x > grid.low).all(-1) & (x < grid.high).all(-1)
            mass.index_add_(0, grid.cell_index(x[inside]), weight[inside])
        return torch.log(mass) - torch.log(mass.sum())


DENSITIES: dict[str, Density2D] = {
    d.name: d for d in (eight_gaussians(), twenty_five_gaussians(), Rings(), Moons(), Checkerboard(), Pinwheel(), TwoSpirals())
}


class Density2DDataset(torch.utils.data.Dataset):
    """A fixed sample of a 2-D density, drawn deterministically from ``seed``."""

    sample_shape = (2,)
    domain = (-4.0, 4.0)
    num_classes = None

    def __init__(self, density: Density2D, size: int = 50_000, seed: int = 0):
        self.density = density
        self.points = density.sample(size, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Tensor:
        return self.points[index]

    def read_batch(self, indices: Tensor) -> tuple[Tensor, None]:
        return self.points.index_select(0, indices), None
