"""The θ-free Gaussian diffusion kernels Q(y|x) = N(y; αx, σ²I) of DCD."""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

from ebmkit import Energy, normal_like


def sigma_fits_kernel(instance, attribute, sigma):
    """Validator for a ``sigma`` field next to a ``kernel`` field: σ > 0, and σ < 1 for VP."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if instance.kernel == "vp" and sigma >= 1:
        raise ValueError(f"a variance-preserving kernel needs sigma < 1 (alpha = sqrt(1 - sigma^2)), got {sigma}")


@attrs.frozen
class GaussianKernel:
    """One step of a θ-free diffusion: y = αx + σε.

    - ``ve`` (variance exploding, dX = g(t) dW): α = 1.
    - ``vp`` (variance preserving, Ornstein–Uhlenbeck): α = √(1 − σ²), so unit-variance data
      stays unit-variance.
    """

    kernel: Literal["ve", "vp"]
    sigma: float = attrs.field(validator=sigma_fits_kernel)

    @property
    def alpha(self) -> float:
        return 1.0 if self.kernel == "ve" else math.sqrt(1.0 - self.sigma**2)

    def diffuse(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.sigma * normal_like(x)

    def backward_proposals(self, y: torch.Tensor, num: int) -> torch.Tensor:
        """``num`` draws per row of ``y`` from x' ~ N(y/α, (σ/α)²I), shape (B·num, ...), grouped by row.

        As a function of x', Q(y|x') is this density times the θ-free factor α^(−d), so
        averaging exp(−U(x')) over these draws estimates exp(−U_t(y)) up to a constant.
        """
        centre = (y / self.alpha).repeat_interleave(num, dim=0)
        return centre + (self.sigma / self.alpha) * normal_like(centre)

    def tether(self, y: torch.Tensor) -> Energy:
        """−log Q(y|x) as an energy of x (up to a constant): adding it to U gives the recovery posterior."""
        return RecoveryTether(y, self.alpha, self.sigma)


class RecoveryTether(Energy):
    """‖y − αx‖² / (2σ²) per sample: the kernel's pull of x towards the diffused point y."""

    def __init__(self, y: torch.Tensor, alpha: float, sigma: float):
        super().__init__()
        self.y, self.alpha, self.sigma = y.detach(), alpha, sigma
        self.label = "tether(y)"

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return (self.y - self.alpha * x).flatten(1).pow(2).sum(1) / (2 * self.sigma**2)
