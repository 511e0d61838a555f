from __future__ import annotations

import math
from typing import Annotated, Literal

import attrs
import torch
from einops import rearrange
from torch import nn

from ebmkit import Energy, EbmkitError

ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}


class MLPEnergy(Energy):
    """A fully connected energy on flattened inputs; labels (if any) enter as an embedding."""

    def __init__(
        self,
        hidden: Annotated[int, attrs.validators.ge(1)] = 128,
        depth: Annotated[int, attrs.validators.ge(1)] = 3,
        activation: Literal["silu", "softplus", "elu", "relu", "tanh"] = "silu",
        *,
        data_shape: tuple[int, ...],
        num_classes: int | None = None,
    ):
        super().__init__()
        if hidden < 1 or depth < 1:
            raise EbmkitError(f"mlp needs hidden >= 1 and depth >= 1, got hidden={hidden}, depth={depth}")
        in_features = math.prod(data_shape)
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, 1)
        self.label_embedding = nn.Embedding(num_classes, in_features) if num_classes else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = rearrange(x, "b ... -> b (...)")
        if self.label_embedding is not None and cond is not None:
            h = h + self.label_embedding(cond.long())
        return rearrange(self.head(self.body(h)), "b 1 -> b")
