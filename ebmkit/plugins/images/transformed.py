"""Another dataset's images made grey, blurred or inverted: out-of-distribution sets built from
in-distribution data (inverted digits, blurred digits, grey shapes)."""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from ebmkit import EbmkitError, component

#: ITU-R BT.601 luma, the weights the shapes dataset binarizes with
LUMA = (0.299, 0.587, 0.114)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Images (C, H, W) convolved with a normalised Gaussian of standard deviation ``sigma`` pixels,
    separably, truncated at 3 sigma; edges are extended (replicate padding), so the mean brightness
    of a flat image is kept."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[0]
    out = F.pad(x[None], (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


@attrs.define(kw_only=True)
class TransformedImages(torch.utils.data.Dataset):
    """The images of ``dataset`` (a dataset table), made grey, then blurred, then inverted.

    ``grey``: three channels become one, their luma (0.299 R + 0.587 G + 0.114 B); one channel
    stays as it is. ``blur``: a Gaussian blur of that standard deviation in pixels (0: none).
    ``invert``: x becomes low + high − x for the dataset's domain (low, high), 1 − x for images
    in [0, 1]. Labels, when the dataset has them, are passed through. E.g. inverted digits:
    ``{name = "transformed", dataset = {name = "digits", split = "test"}, invert = true}``.
    """

    dataset: Any = component("datasets", default=attrs.NOTHING)
    grey: bool = False
    blur: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    invert: bool = False

    def __attrs_post_init__(self) -> None:
        if not (self.grey or self.blur or self.invert):
            raise EbmkitError("transformed with grey = false, blur = 0 and invert = false would change nothing; set at least one")
        shape = tuple(self.dataset.sample_shape)
        if len(shape) != 3:
            raise EbmkitError(f"transformed works on images (channels, height, width); the dataset's samples have shape {shape}")
        if self.grey and shape[0] not in (1, 3):
            raise EbmkitError(f"grey = true makes one channel from one or three (RGB); the dataset's images have {shape[0]}")
        if self.invert and getattr(self.dataset, "domain", None) is None:
            raise EbmkitError("invert = true maps x to low + high - x over the dataset's domain, and this dataset declares none")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        channels, height, width = self.dataset.sample_shape
        return (1 if self.grey else channels, height, width)

    @property
    def domain(self) -> tuple[float, float] | None:
        return self.dataset.domain

    @property
    def num_classes(self) -> int | None:
        return getattr(self.dataset, "num_classes", None)

    @property
    def conditioning(self) -> Any:
        return getattr(self.dataset, "conditioning", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        x, label = item if isinstance(item, tuple | list) else (item, None)
        if self.grey and x.shape[0] == 3:
            x = torch.einsum("c,chw->hw", torch.tensor(LUMA, dtype=x.dtype), x)[None]
        if self.blur:
            x = gaussian_blur(x, self.blur)
        if self.invert:
            low, high = self.domain
            x = low + high - x
        return x if label is None else (x, label)
