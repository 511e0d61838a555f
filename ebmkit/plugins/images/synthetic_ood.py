"""Images that are no dataset's: uniform noise and constant colours, the usual out-of-distribution sets."""

from __future__ import annotations

import attrs
import torch


@attrs.define(kw_only=True)
class UniformNoise(torch.utils.data.Dataset):
    """Images of independent uniform pixels in [0, 1], generated from ``seed``."""

    size: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    image_size: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    channels: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    seed: int = 0

    domain = (0.0, 1.0)
    num_classes = None
    conditioning = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return self._image(generator)

    def _image(self, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(self.sample_shape, generator=generator)


class ConstantImages(UniformNoise):
    """Images of one uniform random colour each, generated from ``seed``."""

    def _image(self, generator: torch.Generator) -> torch.Tensor:
        colour = torch.rand(self.channels, 1, 1, generator=generator)
        return colour.expand(self.sample_shape).clone()
