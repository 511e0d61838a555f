from __future__ import annotations

from typing import Annotated

import attrs
import torch


def _decay_rates(instance, attribute, value):
    if not all(0 <= beta < 1 for beta in value):
        raise ValueError(f"betas must be two decay rates in [0, 1), got {list(value)}")


def adam(
    lr: Annotated[float, attrs.validators.gt(0)] = 1e-3,
    betas: Annotated[tuple[float, float], _decay_rates] = (0.9, 0.999),
    # eps = 0 divides by zero for a parameter whose gradient is still 0 (NaN weights).
    eps: Annotated[float, attrs.validators.gt(0)] = 1e-8,
    weight_decay: Annotated[float, attrs.validators.ge(0)] = 0.0,
    *,
    params,
) -> torch.optim.Optimizer:
    """Adam (torch.optim.Adam)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
