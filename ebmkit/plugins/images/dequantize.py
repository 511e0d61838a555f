from __future__ import annotations

import torch


def dequantize(x: torch.Tensor) -> torch.Tensor:
    """x·255/256 + U(0, 1/256) for 8-bit images in [0, 1], as the Improved-CD reference does."""
    return x * (255 / 256) + torch.rand_like(x) / 256
