"""Plots say what they show: axis labels, titles naming the metric and the step, legends, row labels."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure
import pytest
import torch

from ebmkit._host.protocols import EvalContext
from ebmkit.plugins.dcd.denoise import Denoise
from ebmkit.plugins.images.curves import TrainingCurves
from ebmkit.plugins.images.ood import OODDetection
from ebmkit.plugins.images.shapes import Shapes
from ebmkit.plugins.toy.densities import Density2DDataset, eight_gaussians
from ebmkit.plugins.toy.density2d import Density2DEvaluator

STEP = 7


def quadratic(x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    return 0.5 * x.flatten(1).pow(2).sum(1)


class Identity:
    """A sampler that returns its starts: the plot, not the sampling, is under test."""

    def sample(self, energy, x, cond=None):
        return SimpleNamespace(x=x)


@pytest.fixture
def figures(monkeypatch):
    """Every figure saved during the test, still open, then written as usual."""
    saved = []
    original = matplotlib.figure.Figure.savefig

    def capture(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    return saved


def context(tmp_path, dataset=None, **kwargs) -> EvalContext:
    return EvalContext(quadratic, dataset, Identity(), lambda n: torch.randn(n, 2), tmp_path, STEP, torch.device("cpu"), **kwargs)


def suptitle(fig) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def assert_labelled(ax) -> None:
    assert ax.get_xlabel(), "an axis without an x label"
    assert ax.get_ylabel(), "an axis without a y label"
    assert ax.get_title(), "an axis without a title"


def test_training_curves_are_labelled(tmp_path, figures):
    rows = [{"step": s, "e_pos": -1.0 - s, "e_neg": 1.0 + s, "loss": 2.0 / (s + 1)} for s in range(STEP + 1)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    TrainingCurves().evaluate(context(tmp_path))
    (fig,) = figures
    energies, loss = fig.axes
    for ax in (energies, loss):
        assert_labelled(ax)
        assert ax.get_xlabel() == "training step"
    assert "energy" in energies.get_ylabel() and "energy" in energies.get_title()
    assert legend_labels(energies) == ["E+ (data)", "E- (samples)"]
    assert loss.get_ylabel() == "loss" and "loss" in loss.get_title()
    assert f"step {STEP}" in suptitle(fig)
    assert (tmp_path / "curves.png").exists()


def test_density2d_plot_is_labelled_and_names_its_metrics(tmp_path, figures):
    dataset = Density2DDataset(eight_gaussians(), size=64)
    metrics = Density2DEvaluator(bins=10, num_test=50, num_samples=16).evaluate(context(tmp_path, dataset))
    (fig,) = figures
    data, samples, model = fig.axes[:3]
    for ax in (data, samples, model):
        assert_labelled(ax)
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x1", "x2")
    assert legend_labels(samples) == ["data", "sampler (16 samples)"]
    # the title's numbers are the metrics the evaluator returns, each under its own name
    title = model.get_title()
    assert f"KL(data||model) {metrics['grid_kl']:.3f}" in title
    assert f"NLL {metrics['grid_nll']:.3f}" in title
    assert fig.axes[3].get_ylabel()  # the colorbar says what the colours are
    assert f"step {STEP}" in suptitle(fig)
    assert (tmp_path / f"density2d_step{STEP:07d}.png").exists()


def test_ood_histograms_are_labelled_with_their_auroc(tmp_path, figures):
    test_set = {"name": "uniform_noise", "size": 16, "image_size": 8}
    ood_set = {"name": "constant_images", "size": 16, "image_size": 8, "label": "constant"}
    dataset = SimpleNamespace(sample_shape=(3, 8, 8), num_classes=None)
    metrics = OODDetection(test_set=test_set, ood_sets=[ood_set], num_samples=16).evaluate(context(tmp_path, dataset))
    (fig,) = figures
    (ax,) = fig.axes
    assert_labelled(ax)
    assert "-E(x)" in ax.get_xlabel() and "density" in ax.get_ylabel()
    assert f"AUROC {metrics['auroc/constant']:.3f}" in ax.get_title()
    assert legend_labels(ax) == ["uniform_noise (in)", "constant (OOD)"]
    assert f"step {STEP}" in suptitle(fig)


def test_denoise_grid_has_row_labels(tmp_path, figures):
    dataset = Shapes(size=16, image_size=8)
    metrics = Denoise(sigma=0.1, num_samples=8, nrow=4).evaluate(context(tmp_path, dataset))
    (fig,) = figures
    rows = [ax.get_ylabel() for ax in fig.axes]
    assert len(rows) == 3
    clean, noisy, denoised = rows
    assert clean == "clean"
    assert noisy.startswith("noisy") and "σ=0.1" in noisy and f"PSNR {metrics['psnr_noisy']:.2f} dB" in noisy
    assert denoised.startswith("denoised") and "Tweedie" in denoised and f"PSNR {metrics['psnr_denoised']:.2f} dB" in denoised
    title = suptitle(fig)
    assert f"step {STEP}" in title
    assert f"{metrics['psnr_noisy']:.2f} → {metrics['psnr_denoised']:.2f} dB" in title
    assert (tmp_path / f"denoise_step{STEP:07d}.png").exists()
