from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from ebmkit import EbmkitError, EvalContext, component
from ebmkit.plugins.toy.densities import Grid


def energies(energy, points: torch.Tensor, device: torch.device) -> torch.Tensor:
    """E at many points, in chunks, without a graph: float64 on the CPU."""
    with torch.no_grad():
        return torch.cat([energy(chunk.float().to(device)) for chunk in points.split(4096)]).double().cpu()


def grid_metrics(energy, density, grid: Grid, test_points: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Exact metrics of the model normalised on the grid, against the true density.

    The model's probability of a cell is softmax(−E) over the cell centres (log Z by
    logsumexp times the cell area); nothing is sampled.
    """
    e_grid, e_test = energies(energy, grid.centers(), device), energies(energy, test_points, device)
    log_model = -e_grid - torch.logsumexp(-e_grid, 0)
    log_data, nll_true = _truth(density, grid, test_points)
    p_data = log_data.exp()
    kl = torch.where(p_data > 0, p_data * (log_data - log_model), torch.zeros_like(p_data)).sum()
    log_z = torch.logsumexp(-e_grid, 0) + math.log(grid.cell_area)
    nll = e_test.mean() + log_z
    return {"grid_kl": float(kl), "grid_nll": float(nll), "grid_nll_true": nll_true}


#: (density, grid, test set) -> the true density's cell masses and test NLL. They do not change
#: during a run, and for the densities without a closed form (moons, 2spirals) they take seconds.
_truths: dict[tuple, tuple[torch.Tensor, float]] = {}


def _truth(density, grid: Grid, test_points: torch.Tensor) -> tuple[torch.Tensor, float]:
    key = (density.name, grid.low, grid.high, grid.bins, test_points.shape[0], float(test_points.double().sum()))
    if key not in _truths:
        log_data = density.grid_log_mass(grid)
        try:
            nll_true = -density.log_prob(test_points).mean()
        except NotImplementedError:  # no closed form: the true density, piecewise constant on the grid
            nll_true = -(log_data[grid.cell_index(test_points)] - math.log(grid.cell_area)).mean()
        _truths[key] = (log_data, float(nll_true))
    return _truths[key]


@attrs.frozen
class Density2DEvaluator:
    """Exact grid KL(data||model) and NLL on a 2-D density, and a plot of samples and landscape."""

    bins: int = attrs.field(default=100, validator=attrs.validators.ge(10))
    extent: float = attrs.field(default=4.0, validator=attrs.validators.gt(0))
    num_test: int = attrs.field(default=5000, validator=attrs.validators.gt(0))
    num_samples: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    plot: bool = True
    #: a sampler of its own for the plotted samples (``[evaluators.sampler]``); else the run's
    sampler: Any = component("samplers")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        density = getattr(ctx.dataset, "density", None)
        if density is None:
            raise EbmkitError("the density2d evaluator needs a 2-D density dataset ([data] name = '8gaussians', ...)")
        grid = Grid(-self.extent, self.extent, self.bins)
        test = density.sample(self.num_test, torch.Generator().manual_seed(12345))
        metrics = grid_metrics(ctx.energy, density, grid, test, ctx.device)
        if self.plot:
            samples = None
            if self.num_samples:
                samples = (self.sampler or ctx.sampler).sample(ctx.energy, ctx.noise(self.num_samples)).x.cpu()
            self._plot(ctx, grid, test, samples, metrics)
        return metrics

    def _plot(self, ctx: EvalContext, grid: Grid, data: torch.Tensor, samples, metrics) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        e = energies(ctx.energy, grid.centers(), ctx.device)
        density = torch.softmax(-e, 0).reshape(grid.bins, grid.bins) / grid.cell_area
        extent = (grid.low, grid.high, grid.low, grid.high)
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
        shown = data[:2000]
        axes[0].scatter(shown[:, 0], shown[:, 1], s=1, c="k")
        axes[0].set_title(f"data: {len(shown)} samples of the true density")
        axes[1].scatter(shown[:, 0], shown[:, 1], s=1, c="0.75", label="data")
        if samples is not None:
            axes[1].scatter(samples[:, 0], samples[:, 1], s=1, c="tab:red", label=f"sampler ({len(samples)} samples)")
            axes[1].set_title("sampler output over data")
            axes[1].legend(loc="upper right", markerscale=6, fontsize=8)
        else:
            axes[1].set_title("data (no samples drawn: num_samples = 0)")
        image = axes[2].imshow(density.numpy(), origin="lower", extent=extent, cmap="viridis")
        colorbar = fig.colorbar(image, ax=axes[2], fraction=0.046)
        colorbar.set_label("p(x) = exp(-E(x))/Z")
        # grid_kl and grid_nll are exactly what evaluate() returns, both in nats.
        axes[2].set_title(
            f"model density exp(-E)/Z ({grid.bins}x{grid.bins} grid)\n"
            f"KL(data||model) {metrics['grid_kl']:.3f}, test NLL {metrics['grid_nll']:.3f} (nats)",
            fontsize=10,
        )
        for ax in axes:
            ax.set_xlim(grid.low, grid.high)
            ax.set_ylim(grid.low, grid.high)
            ax.set_aspect("equal")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        fig.suptitle(f"2-D density, step {ctx.step}")
        fig.tight_layout()
        fig.savefig(ctx.out_dir / f"density2d_step{ctx.step:07d}.png", dpi=90)
        plt.close(fig)
