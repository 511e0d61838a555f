"""The Gaussian experiment: standard-normal data, a quadratic energy, and the exact KL between them."""

from __future__ import annotations

import math
from typing import Annotated

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from ebmkit import EbmkitError, Energy, EvalContext


@attrs.define(kw_only=True)
class GaussianData(torch.utils.data.Dataset):
    """Samples of an n-dimensional standard Gaussian N(0, I), drawn deterministically from seed."""

    dim: int = attrs.field(default=2, validator=attrs.validators.gt(0))
    size: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    seed: int = 0
    points: torch.Tensor = attrs.field(init=False, repr=False)

    domain = None  # fresh chains start from N(0, I)
    num_classes = None

    def __attrs_post_init__(self) -> None:
        self.points = torch.randn(self.size, self.dim, generator=torch.Generator().manual_seed(self.seed))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.points[index]

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.points.index_select(0, indices), None


class QuadraticEnergy(Energy):
    """E(x) = ½ (x − μ)ᵀ P (x − μ) + c, a Gaussian N(μ, P⁻¹) with learned mean and precision P = L Lᵀ.

    With ``learn_offset`` the offset c is a learned parameter (``offset``, starting at 0); the
    model is then normalised exactly when c = log Z = (d/2)·log 2π − ½·log det P, which
    self-normalising objectives such as NCE must be able to reach. Without it (the default)
    c = 0 and the energy has no ``offset`` parameter, so existing checkpoints load unchanged.
    """

    def __init__(self, init_scale: Annotated[float, attrs.validators.gt(0)] = 2.0, learn_offset: bool = False, *,
                 data_shape: tuple[int, ...]):
        super().__init__()
        if len(data_shape) != 1:
            raise EbmkitError(f"the quadratic energy needs vector data, got samples of shape {tuple(data_shape)}")
        dim = data_shape[0]
        self.mean = nn.Parameter(torch.full((dim,), 1.0))
        # L is lower-triangular with a positive diagonal (softplus), so P = L Lᵀ is positive definite.
        self.lower = nn.Parameter(torch.zeros(dim, dim))
        self.raw_diagonal = nn.Parameter(torch.full((dim,), float(torch.log(torch.expm1(torch.tensor(1 / init_scale))))))
        self.offset = nn.Parameter(torch.zeros(())) if learn_offset else None

    def cholesky(self) -> torch.Tensor:
        return torch.tril(self.lower, -1) + torch.diag(F.softplus(self.raw_diagonal))

    def precision(self) -> torch.Tensor:
        chol = self.cholesky()
        return chol @ chol.T

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        d = (x - self.mean) @ self.cholesky()
        energy = 0.5 * (d**2).sum(1)
        return energy if self.offset is None else energy + self.offset

    def log_normalizer(self) -> torch.Tensor:
        """log Z of the quadratic part, log ∫ exp(−½(x − μ)ᵀP(x − μ)) dx = (d/2)·log 2π − ½·log det P."""
        d = self.mean.numel()
        return 0.5 * d * math.log(2 * math.pi) - torch.log(torch.diagonal(self.cholesky())).sum()


def kl_standard_normal_to(mean: torch.Tensor, precision: torch.Tensor) -> float:
    """KL(N(0, I) ‖ N(μ, P⁻¹)) = ½ [tr P + μᵀPμ − n − log det P]."""
    n = mean.numel()
    return float(0.5 * (torch.trace(precision) + mean @ precision @ mean - n - torch.logdet(precision)))


@attrs.frozen
class GaussianKL:
    """Exact KL(data || model) between N(0, I) data and a quadratic (Gaussian) energy."""

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        if not hasattr(ctx.energy, "precision"):
            raise EbmkitError("the gaussian_kl evaluator needs the quadratic energy ([energy] name = 'quadratic')")
        with torch.no_grad():
            return {"kl": kl_standard_normal_to(ctx.energy.mean.double(), ctx.energy.precision().double())}
