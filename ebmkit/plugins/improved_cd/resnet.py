"""The Improved-CD reference's residual energies: 32 px (CIFAR-10) and 128 px (CelebA-HQ, LSUN).

Weight-standardised 3x3 convolutions, instance norm (group norm above 128 channels), swish,
FiLM conditioning after each norm (gain not offset by 1), SAGAN self-attention at 8x8 in the
full-resolution branch, residual added before the downsampling conv and pool, global mean pool
and a linear head. The multi-scale energy adds half- and quarter-resolution branches; its
energy is the sum of the three scales (what samplers use); ``energy(x, per_scale=True)`` returns them
apart (losses average them): the :class:`ebmkit.MultiScale` protocol. Parameter counts match the reference: 6.64 M for the 32 px layout at
width 64 and 27.1 M for the 128 px layout at width 128 (multi-scale and attention on).
"""

from __future__ import annotations

from typing import Annotated

import attrs
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ebmkit import EbmkitError, Energy


def _multiple_of_8(instance, attribute, value):
    if value < 8 or value % 8:
        raise ValueError(f"width must be a multiple of 8 and at least 8, got {value}")


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class WSConv2d(nn.Conv2d):
    """A convolution whose weights are standardised per output channel before use."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (rearrange(w, "o i h w -> o (i h w)").std(dim=1).view(-1, 1, 1, 1) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def norm_layer(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if channels <= 128 else nn.GroupNorm(32, channels)


class SelfAttention(nn.Module):
    """SAGAN self-attention with a zero-initialised residual gain."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        q = rearrange(self.query(x), "b c h w -> b (h w) c")
        k = rearrange(self.key(x), "b c h w -> b c (h w)")
        v = rearrange(self.value(x), "b c h w -> b c (h w)")
        attention = torch.softmax(q @ k, dim=-1)
        out = rearrange(v @ attention.transpose(1, 2), "b c (h w) -> b c h w", h=h)
        return self.gamma * out + x


class ResBlock(nn.Module):
    """conv-norm-FiLM-swish twice, plus the input; then optionally conv, 3x3/2 average pool, swish."""

    def __init__(self, channels: int, classes: int, downsample: bool = False, widen: bool = False):
        super().__init__()
        self.channels = channels
        self.conv1, self.conv2 = WSConv2d(channels, channels, 3, padding=1), WSConv2d(channels, channels, 3, padding=1)
        self.norm1, self.norm2 = norm_layer(channels), norm_layer(channels)
        # The reference builds the FiLM maps even for unconditional models (they count as parameters).
        self.film1, self.film2 = nn.Linear(classes, 2 * channels), nn.Linear(classes, 2 * channels)
        self.downsample = downsample
        if downsample:
            self.conv_down = nn.Conv2d(channels, 2 * channels if widen else channels, 3, padding=1)

    def _film(self, x: torch.Tensor, film: nn.Linear, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            return x
        gain, bias = rearrange(film(cond), "b (two c) -> two b c 1 1", two=2)
        return gain * x + bias

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = swish(self._film(self.norm1(self.conv1(x)), self.film1, cond))
        h = swish(self._film(self.norm2(self.conv2(h)), self.film2, cond))
        out = h + x
        if self.downsample:
            out = swish(F.avg_pool2d(self.conv_down(out), 3, stride=2, padding=1))
        return out


class Branch(nn.Module):
    """A stem conv, residual blocks given as (channels, downsample, widen), mean pool, linear head."""

    def __init__(self, stem: int, classes: int, blocks: list[tuple[int, bool, bool]], attention_after: int | None, image_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(image_channels, stem, 3, padding=1)
        layers: list[nn.Module] = []
        channels = stem
        for index, (block_channels, downsample, widen) in enumerate(blocks):
            if block_channels != channels:
                raise ValueError("each block must take the previous block's channels")
            layers.append(ResBlock(channels, classes, downsample=downsample, widen=widen))
            channels = 2 * channels if widen else channels
            if attention_after == index:
                layers.append(SelfAttention(channels))
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = swish(self.stem(x))
        for block in self.blocks:
            h = block(h) if isinstance(block, SelfAttention) else block(h, cond)
        return self.head(swish(h).mean(dim=(2, 3)))


def layout_32(w: int) -> dict[str, tuple]:
    """The reference's ResNetModel (CIFAR-10): attention at 8x8 on 2w channels."""
    pair = lambda c, widen: [(c, False, False), (c, True, widen)]  # noqa: E731
    return {
        "full": (w, pair(w, False) + pair(w, True) + pair(2 * w, True) + pair(4 * w, True), 3),
        "half": (w, pair(w, False) + pair(w, True) + pair(2 * w, True), None),
        "quarter": (w, pair(w, False) + pair(w, True), None),
    }


def layout_128(w: int) -> dict[str, tuple]:
    """The reference's CelebAModel (CelebA-HQ, LSUN at 128 px): attention at 4x4 on 4w channels."""
    down = [(w, True, False), (w, True, False), (w, True, False), (w, True, True)]
    return {
        "full": (w // 2, [(w // 2, True, True), (w, True, False), (w, True, False), (w, True, True),
                          (2 * w, False, False), (2 * w, True, True), (4 * w, False, False), (4 * w, True, True)], 5),
        "half": (w, down + [(2 * w, False, False), (2 * w, True, True)], None),
        "quarter": (w, down, None),
    }


class ResNetEnergy(Energy):
    """Improved-CD residual energy: multi-scale, self-attention, FiLM conditioning (32 px layout)."""

    layout = staticmethod(layout_32)
    film_classes = 10  # the reference's FiLM maps take a 10-way one-hot for CIFAR-10

    def __init__(
        self,
        width: Annotated[int, _multiple_of_8] = 64,
        multiscale: bool = True,
        self_attention: bool = True,
        *,
        data_shape: tuple[int, ...],
        num_classes: int | None = None,
    ):
        super().__init__()
        if len(data_shape) != 3 or data_shape[0] not in (1, 3):
            raise EbmkitError(f"{type(self).__name__} needs RGB or grey images (3 or 1, H, W), got samples of shape {tuple(data_shape)}")
        if width < 8 or width % 8:
            raise EbmkitError(f"the energy's width must be a multiple of 8, got {width}")
        self.num_classes = num_classes
        classes = num_classes or self.film_classes
        self.multiscale = multiscale
        branches = self.layout(width)
        stem, blocks, attention = branches["full"]
        channels = data_shape[0]
        self.full = Branch(stem, classes, blocks, attention if self_attention else None, channels)
        if multiscale:
            self.half_res = Branch(branches["half"][0], classes, branches["half"][1], None, channels)
            self.quarter_res = Branch(branches["quarter"][0], classes, branches["quarter"][1], None, channels)

    @property
    def num_scales(self) -> int:
        return 3 if self.multiscale else 1

    def _film(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        if cond is None or self.num_classes is None:
            return None
        if cond.is_floating_point():
            return cond
        return F.one_hot(cond.long(), self.num_classes).float()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, *, per_scale: bool = False) -> torch.Tensor:
        """The energy, the sum of the scales; with ``per_scale``, the scales apart, shape (B, S):
        quarter, half and full resolution (S = 3), or full only."""
        film = self._film(cond)
        if not self.multiscale:
            scales = self.full(x, film)
        else:
            half = F.avg_pool2d(x, 3, stride=2, padding=1)
            quarter = F.avg_pool2d(half, 3, stride=2, padding=1)
            scales = torch.cat([self.quarter_res(quarter, film), self.half_res(half, film), self.full(x, film)], dim=1)
        return scales if per_scale else scales.sum(dim=1)


class ResNetEnergy128(ResNetEnergy):
    """Improved-CD residual energy for 128 px images (CelebA-HQ, LSUN): multi-scale, attention, FiLM."""

    layout = staticmethod(layout_128)
    film_classes = 2  # one binary attribute per model in the reference

    def __init__(self, width: Annotated[int, _multiple_of_8] = 128, multiscale: bool = True, self_attention: bool = True, *,
                 data_shape: tuple[int, ...], num_classes: int | None = None):
        super().__init__(width, multiscale, self_attention, data_shape=data_shape, num_classes=num_classes)
