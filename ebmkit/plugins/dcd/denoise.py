from __future__ import annotations

import math

import attrs
import torch

from ebmkit import EbmkitError, EvalContext, energy_and_grad, stack_samples


NOISE_SEED = 20230704


def tweedie_denoise(energy, y: torch.Tensor, sigma: float, cond: torch.Tensor | None = None) -> torch.Tensor:
    """One Tweedie step x̂ = y − σ²∇_y E(y).

    When E is the energy of the σ-noised data, this is exactly the posterior mean E[x|y]
    (Tweedie's formula); for a model of the clean data it is the small-σ approximation.
    """
    _, grad = energy_and_grad(energy, y, cond)
    return y - sigma**2 * grad


def psnr(estimate: torch.Tensor, clean: torch.Tensor, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, 10·log10(range² / MSE), the MSE over the whole batch."""
    mse = float((estimate - clean).double().pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


@attrs.frozen(kw_only=True)
class Denoise:
    """Adds Gaussian noise of std ``sigma`` to data and denoises it with one Tweedie step.

    Reports the PSNR of the noisy and of the denoised samples (``psnr_noisy``,
    ``psnr_denoised``, and their difference ``psnr_gain``), over ``num_samples`` fixed data
    points and fixed noise, so numbers are comparable across steps and runs. The peak is
    ``data_range``, by default the width of the dataset's domain. For image data it writes
    denoise_step*.png: labelled clean, noisy and denoised rows.
    """

    sigma: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    num_samples: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    data_range: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    nrow: int = attrs.field(default=8, validator=attrs.validators.gt(0))

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        data_range = self.data_range
        if data_range is None:
            domain = getattr(ctx.dataset, "domain", None)
            if domain is None:
                raise EbmkitError("the denoise evaluator needs data_range = ... for a dataset without a domain")
            data_range = domain[1] - domain[0]
        # The evaluator runs on a forked random state: fixing it fixes the images and the noise.
        torch.manual_seed(0)
        count = min(self.num_samples, len(ctx.dataset))
        indices = torch.linspace(0, len(ctx.dataset) - 1, count).long().tolist()
        clean, labels = stack_samples(ctx.dataset, indices)
        clean = clean.to(ctx.device)
        cond = labels.to(ctx.device) if labels is not None and getattr(ctx.dataset, "num_classes", None) else None
        # Its own stream for the noise: a dataset drawn from seed 0 must not get its own samples back as noise.
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(ctx.device)
        noisy = clean + self.sigma * noise
        denoised = tweedie_denoise(ctx.energy, noisy, self.sigma, cond)
        metrics = {"psnr_noisy": psnr(noisy, clean, data_range), "psnr_denoised": psnr(denoised, clean, data_range)}
        metrics["psnr_gain"] = metrics["psnr_denoised"] - metrics["psnr_noisy"]
        if clean.dim() == 4:
            self._plot(ctx, clean, noisy, denoised, metrics)
        return metrics

    def _plot(self, ctx: EvalContext, clean, noisy, denoised, metrics: dict[str, float]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from torchvision.utils import make_grid

        shown = min(self.nrow, len(clean))
        rows = [
            ("clean", clean),
            (f"noisy: clean + N(0, σ²)\nσ={self.sigma:g}, PSNR {metrics['psnr_noisy']:.2f} dB", noisy),
            (f"denoised: one Tweedie step\ny − σ²∇E(y), PSNR {metrics['psnr_denoised']:.2f} dB", denoised),
        ]
        fig, axes = plt.subplots(len(rows), 1, figsize=(max(6.0, 1.1 * shown + 2.6), 1.2 * len(rows) + 0.8), squeeze=False)
        for ax, (label, images) in zip(axes[:, 0], rows, strict=True):
            grid = make_grid(images[:shown].detach().clamp(0, 1).cpu(), nrow=shown, padding=2)
            ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        # The PSNRs are over all num_samples images, not only the ones shown.
        fig.suptitle(
            f"denoising, step {ctx.step}: PSNR {metrics['psnr_noisy']:.2f} → {metrics['psnr_denoised']:.2f} dB "
            f"(gain {metrics['psnr_gain']:+.2f} dB) over {len(clean)} images\n"
            f"first {shown} shown, pixels clipped to [0, 1] for display",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(ctx.out_dir / f"denoise_step{ctx.step:07d}.png", dpi=100)
        plt.close(fig)
