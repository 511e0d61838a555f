"""Image grids a person can see: small images are scaled up, pixels kept as pixels."""

from __future__ import annotations

from pathlib import Path

import torch

#: images smaller than this are scaled up (nearest neighbour, by a whole factor) to at least it
VISIBLE_SIZE = 64


def upscale_factor(height: int, width: int) -> int:
    """The smallest whole factor that makes an image of this size at least VISIBLE_SIZE px on its short side."""
    return max(1, -(-VISIBLE_SIZE // min(height, width)))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, scale: int | None = None) -> None:
    """Write images (N, C, H, W) in [0, 1] (one or three channels) as a PNG grid, ``nrow`` per row.

    ``scale``: each pixel becomes a scale x scale block (nearest neighbour, so pixels stay
    pixels); None picks the factor that shows an 8 px digit at 64 px; 1 writes them as they are.
    The padding is grey, so it shows between images with a black or a white background.
    """
    from torchvision.utils import save_image

    images = images.detach().clamp(0, 1).cpu()
    factor = upscale_factor(*images.shape[-2:]) if scale is None else scale
    if factor > 1:
        images = images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    save_image(images, path, nrow=nrow, padding=max(2, factor // 2), pad_value=0.5)
