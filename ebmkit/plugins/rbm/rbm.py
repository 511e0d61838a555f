"""A binary-binary restricted Boltzmann machine, as an energy of the visible units alone.

Joint energy E(v, h) = −aᵀv − bᵀh − vᵀWh; the energy ebmkit samples and trains is the free
energy F(v) = −log Σ_h exp(−E(v, h)) = −aᵀv − Σ_j softplus(b_j + (vᵀW)_j), so p(v) ∝ exp(−F(v)).
"""

from __future__ import annotations

import math
from typing import Annotated

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from ebmkit import Energy


class BinaryRBM(Energy):
    """Binary-binary RBM; its energy is the free energy F(v) of the (flattened) visible units."""

    def __init__(
        self,
        hidden: Annotated[int, attrs.validators.ge(1)] = 64,
        init_std: Annotated[float, attrs.validators.ge(0)] = 0.01,
        *,
        data_shape: tuple[int, ...],
    ):
        super().__init__()
        visible = math.prod(data_shape)
        self.weight = nn.Parameter(torch.randn(visible, hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(visible))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))

    @property
    def num_visible(self) -> int:
        return self.weight.shape[0]

    @property
    def num_hidden(self) -> int:
        return self.weight.shape[1]

    def forward(self, v: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        v = v.flatten(1)
        return -(v @ self.visible_bias) - F.softplus(self.hidden_bias + v @ self.weight).sum(1)

    def joint_energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        v = v.flatten(1)
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(1)

    def hidden_probs(self, v: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """p(h_j = 1 | v) = σ(b_j + (vᵀW)_j), at inverse temperature β on the interaction."""
        field = self.hidden_bias + v.flatten(1) @ self.weight
        return torch.sigmoid(field if beta == 1.0 else beta * field)  # (×1.0 is exact: skipped, one op less)

    def visible_probs(self, h: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """p(v_i = 1 | h) = σ(a_i + (Wh)_i); with β < 1 only the interaction is tempered (AIS)."""
        return torch.sigmoid(self.visible_bias + (h if beta == 1.0 else beta * h) @ self.weight.T)
