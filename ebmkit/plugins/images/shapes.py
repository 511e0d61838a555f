"""A procedural image dataset that ships with ebmkit: coloured shapes at 32x32 with attributes.

Each image holds one circle, square or triangle of one of six colours, small or large, in one
of four quadrants, on a dark background, generated deterministically from ``seed``. Every
image carries its four attributes; ``label`` picks one as the class label.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F

from ebmkit import Conditioning, EbmkitError, did_you_mean_hint
from ebmkit.plugins.images.dequantize import dequantize as dequantized
from ebmkit.plugins.images.items import first_item

SHAPES = ("circle", "square", "triangle")
COLORS = ((0.9, 0.15, 0.15), (0.15, 0.8, 0.2), (0.2, 0.35, 0.95), (0.95, 0.85, 0.1), (0.85, 0.2, 0.85), (0.1, 0.85, 0.9))
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZES = ("small", "large")
POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right")
ATTRIBUTES = {"shape": SHAPES, "color": COLOR_NAMES, "size": SIZES, "position": POSITIONS}


def render(attributes: torch.Tensor, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw images (N, 3, S, S) in [0, 1] from attribute rows (shape, colour, size, position)."""
    n, s = len(attributes), image_size
    fine = 2 * s  # supersample, then average-pool: anti-aliased edges
    shape, color, size, position = attributes.unbind(1)
    radius = torch.where(size == 0, 0.13, 0.22) * fine
    jitter = (torch.rand(n, 2, generator=generator) - 0.5) * 0.12 * fine
    cx = torch.where(position % 2 == 0, 0.28, 0.72) * fine + jitter[:, 0]
    cy = torch.where(position < 2, 0.28, 0.72) * fine + jitter[:, 1]
    ys, xs = torch.meshgrid(torch.arange(fine) + 0.5, torch.arange(fine) + 0.5, indexing="ij")
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    r = radius[:, None, None]
    circle = dx**2 + dy**2 <= r**2
    square = (dx.abs() <= 0.85 * r) & (dy.abs() <= 0.85 * r)
    # An upward triangle: apex at (0, -r), base at dy = 0.8 r and half as wide as r; at height dy
    # the half-width grows linearly as (dy + r) / 1.8.
    triangle = (dy <= 0.8 * r) & (dx.abs() <= (dy + r) / 1.8)
    mask = torch.where((shape == 0)[:, None, None], circle, torch.where((shape == 1)[:, None, None], square, triangle))
    rgb = torch.tensor(COLORS)[color][:, :, None, None]
    background = 0.08 + 0.04 * torch.rand(n, 1, 1, 1, generator=generator)
    image = torch.where(mask[:, None], rgb, background.expand(n, 3, 1, 1))
    return F.avg_pool2d(image, 2).clamp(0, 1)


def _combinations(instance, attribute, value) -> None:
    """Each entry is a table of attribute = value, e.g. {color = "red", shape = "circle"}."""
    for i, combination in enumerate(value):
        if not isinstance(combination, dict) or not combination:
            raise ValueError(f"{attribute.name}[{i}] must be a table of attribute = value, e.g. {{color = \"red\", shape = \"circle\"}}")
        for key, name in combination.items():
            if key not in ATTRIBUTES:
                raise ValueError(f"{attribute.name}[{i}]: shapes has no attribute {key!r}{did_you_mean_hint(key, ATTRIBUTES)}"
                                 + f"; attributes: {', '.join(ATTRIBUTES)}")
            if name not in ATTRIBUTES[key]:
                raise ValueError(f"{attribute.name}[{i}]: {key} has no value {name!r}{did_you_mean_hint(str(name), ATTRIBUTES[key])}"
                                 + f"; values: {', '.join(ATTRIBUTES[key])}")


def matches(attributes: torch.Tensor, combinations: list[dict[str, str]]) -> torch.Tensor:
    """Which rows of (N, 4) attribute indices carry any of the combinations (all of its values)."""
    hit = torch.zeros(len(attributes), dtype=torch.bool)
    for combination in combinations:
        rows = torch.ones(len(attributes), dtype=torch.bool)
        for key, name in combination.items():
            rows &= attributes[:, list(ATTRIBUTES).index(key)] == ATTRIBUTES[key].index(name)
        hit |= rows
    return hit


@attrs.define(kw_only=True)
class Shapes(torch.utils.data.Dataset):
    """Procedural coloured shapes (circle, square, triangle) with shape/colour/size/position labels; no download.

    ``label`` picks the attribute given as the class label (a conditional model per attribute).
    ``exclude`` leaves combinations out, e.g. ``[{color = "red", shape = "circle"}]`` (no red
    circles; ``[{color = "magenta"}]``: no magenta shape at all); ``only`` keeps nothing else.
    ``binarize`` gives one-channel binary images (shape = 1, background = 0), e.g. for RBMs.
    """

    size: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    image_size: int = attrs.field(default=32, validator=attrs.validators.ge(8))
    seed: int = 0
    label: Literal["shape", "color", "size", "position"] | None = None
    exclude: list[dict[str, str]] = attrs.field(factory=list, validator=_combinations)
    only: list[dict[str, str]] = attrs.field(factory=list, validator=_combinations)
    dequantize: bool = True
    binarize: bool = False
    attributes: torch.Tensor = attrs.field(init=False, repr=False)
    images: torch.Tensor = attrs.field(init=False, repr=False)
    #: with ``binarize``: the one-channel binary images, made once (float 0/1, as they are read)
    _binary: torch.Tensor | None = attrs.field(init=False, repr=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.label is not None and self.label not in ATTRIBUTES:
            raise EbmkitError(f"shapes has no attribute {self.label!r}; choose one of {', '.join(ATTRIBUTES)}")
        generator = torch.Generator().manual_seed(self.seed)
        self.attributes = self._draw_attributes(generator)
        chunks = [render(a, self.image_size, generator) for a in self.attributes.split(2048)]
        self.images = (torch.cat(chunks) * 255).round().to(torch.uint8)  # stored as 8-bit, like real images
        if self.binarize:  # one channel, 1 where the shape is (its luma is above 0.25, the background's below)
            x = self.images.float() / 255
            self._binary = (x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114 > 0.25).float()

    def _draw_attributes(self, generator: torch.Generator) -> torch.Tensor:
        counts = [len(values) for values in ATTRIBUTES.values()]
        kept: list[torch.Tensor] = []
        total, rounds = 0, 0
        while total < self.size:
            drawn = torch.stack([torch.randint(c, (self.size,), generator=generator) for c in counts], 1)
            keep = ~matches(drawn, self.exclude)
            if self.only:
                keep &= matches(drawn, self.only)
            kept.append(drawn[keep])
            total, rounds = total + int(keep.sum()), rounds + 1
            if rounds == 50 and total == 0:
                raise EbmkitError(f"shapes: no combination is left by only = {self.only} and exclude = {self.exclude}")
        return torch.cat(kept)[: self.size]

    @property
    def conditioning(self) -> Conditioning | None:
        return Conditioning(self.label, ATTRIBUTES[self.label]) if self.label else None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (1 if self.binarize else 3, self.image_size, self.image_size)

    domain = (0.0, 1.0)

    @property
    def num_classes(self) -> int | None:
        return len(ATTRIBUTES[self.label]) if self.label else None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        return first_item(self.read_batch(torch.tensor([index])))

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._binary is not None:
            x = self._binary.index_select(0, indices)
        else:
            x = self.images.index_select(0, indices).float() / 255
            x = dequantized(x) if self.dequantize else x
        labels = None if self.label is None else self.attributes[indices, list(ATTRIBUTES).index(self.label)]
        return x, labels
