from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from einops import rearrange

from ebmkit import StepContext, StepResult

#: The Improved-CD reference's buffer augmentations per dataset (ReservoirBuffer, utils.py):
#: crop scale, colour strength s (ColorJitter(0.8s, 0.8s, 0.8s, 0.4s)), blur kernel (0: none).
PRESETS: dict[str, dict] = {
    "cifar10": {"crop_scale": (0.08, 1.0), "color_strength": 1.0, "blur_kernel": 0},
    "celeba": {"crop_scale": (0.08, 1.0), "color_strength": 0.5, "blur_kernel": 5},
    "lsun": {"crop_scale": (0.08, 1.0), "color_strength": 0.5, "blur_kernel": 5},
    "imagenet": {"crop_scale": (0.6, 1.0), "color_strength": 0.5, "blur_kernel": 11},
    "stl": {"crop_scale": (0.04, 1.0), "color_strength": 0.5, "blur_kernel": 11},
    "object": {"crop_scale": (0.08, 1.0), "color_strength": 0.5, "blur_kernel": 0},
}
GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _interval(instance, attribute, value):
    if value is not None and not (0 <= value[0] <= value[1]):
        raise ValueError(f"{attribute.name} must be [low, high] with 0 <= low <= high, got {list(value)}")


def _positive_interval(instance, attribute, value):
    if not (0 < value[0] <= value[1]):
        raise ValueError(f"{attribute.name} must be [low, high] with 0 < low <= high, got {list(value)}")


def _odd_or_zero(instance, attribute, value):
    if value is not None and (value < 0 or (value and value % 2 == 0)):
        raise ValueError(f"{attribute.name} must be an odd number of pixels (or 0 for no blur), got {value}")


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * a + (1 - f) * b).clamp(0, 1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue (HSV hue rotation), computed directly in RGB.

    A hue rotation keeps each pixel's max M and chroma C = M − min; with the hue h (in sixths)
    moved by 6·shift, channel n is M − C·clamp(min(k, 4 − k), 0, 1), k = (n' + h) mod 6,
    n' = 5, 3, 1 for R, G, B.
    """
    r, g, b = x.unbind(1)
    top = torch.maximum(torch.maximum(r, g), b)
    chroma = top - torch.minimum(torch.minimum(r, g), b)
    safe = chroma + (chroma == 0).to(x.dtype)  # grey pixels: any hue, chroma 0 keeps them grey
    is_r = top == r
    is_g = (top == g) & ~is_r
    is_b = ~(is_r | is_g)
    difference = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    sector = 2.0 * is_g.to(x.dtype) + 4.0 * is_b.to(x.dtype)  # scalar-valued where() is slow on CPU
    sixths = (difference / safe + sector + 6.0 * shift.view(-1, 1, 1)).unsqueeze(1)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = offsets + sixths
    k = k - 6.0 * torch.floor(k * (1 / 6))  # k mod 6, about twice as fast as torch.remainder here
    return top.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


@attrs.frozen(kw_only=True)
class Augment:
    """Batched data augmentation with independent random parameters per sample (SimCLR-style, as in Improved CD).

    Random resized crop, horizontal flip, colour jitter (applied with ``color_prob``, its four
    operations in a random order per sample), random grayscale and Gaussian blur, all as
    tensor operations on the batch's device. ``preset`` takes the Improved-CD reference's
    settings for a dataset; a parameter given explicitly overrides the preset.
    """

    preset: Literal["cifar10", "celeba", "lsun", "imagenet", "stl", "object"] = "cifar10"
    crop_scale: tuple[float, float] | None = attrs.field(default=None, validator=_interval)
    crop_ratio: tuple[float, float] = attrs.field(default=(3 / 4, 4 / 3), validator=_positive_interval)
    flip: bool = True
    color_strength: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    color_prob: float = attrs.field(default=0.8, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    gray_prob: float = attrs.field(default=0.2, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    blur_kernel: int | None = attrs.field(default=None, validator=_odd_or_zero)
    blur_prob: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    blur_sigma: tuple[float, float] = attrs.field(default=(0.1, 2.0), validator=_positive_interval)

    def _setting(self, name: str):
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value

    def step(self, energy, x: torch.Tensor, ctx: StepContext) -> StepResult:
        return StepResult(self(x.detach()))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            from ebmkit import EbmkitError

            raise EbmkitError(f"the augment transition needs RGB image batches (B, 3, H, W), got shape {tuple(x.shape)}")
        x = self.random_resized_crop(x)  # a new tensor: the steps below may write into it
        if self.flip:
            self._apply_some(x, 0.5, lambda chosen: chosen.flip(-1))
        if self._setting("color_strength") > 0:
            self._apply_some(x, self.color_prob, self.color_jitter)
        self._apply_some(x, self.gray_prob, lambda chosen: _gray(chosen).expand_as(chosen))
        kernel = self._setting("blur_kernel")
        if kernel and kernel // 2 >= min(x.shape[-2:]):
            from ebmkit import EbmkitError

            raise EbmkitError(f"the augment blur kernel ({kernel}) is too wide for {x.shape[-2]}x{x.shape[-1]} images")
        if kernel:
            self._apply_some(x, self.blur_prob, lambda chosen: self.gaussian_blur(chosen, kernel))
        return x

    @staticmethod
    def _apply_some(x: torch.Tensor, prob: float, op) -> None:
        """Replace, in place, each sample with probability ``prob`` by ``op`` of it.

        ``op`` runs on the whole batch and a mask picks the rows: selecting the chosen rows first
        would make the host wait for the device to learn how many there are, every draw.
        """
        if prob <= 0:
            return
        chosen = (torch.rand(len(x), device=x.device) < prob).view(-1, *([1] * (x.dim() - 1)))
        x.copy_(torch.where(chosen, op(x), x))

    def random_resized_crop(self, x: torch.Tensor, tries: int = 10) -> torch.Tensor:
        b, _, height, width = x.shape
        device, area = x.device, height * width
        low, high = self._setting("crop_scale")
        scale = torch.empty(b, tries, device=device).uniform_(low, high)
        ratio = torch.exp(torch.empty(b, tries, device=device).uniform_(*map(math.log, self.crop_ratio)))
        w = torch.sqrt(area * scale * ratio).round()
        h = torch.sqrt(area * scale / ratio).round()
        ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
        # torchvision tries 10 times, then falls back to a centre crop of the whole image.
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1, device=device))
        pick = first.clamp_min(0)[:, None]
        w, h = w.gather(1, pick).squeeze(1), h.gather(1, pick).squeeze(1)
        fallback = first < 0
        w, h = torch.where(fallback, torch.full_like(w, width), w), torch.where(fallback, torch.full_like(h, height), h)
        left = torch.floor(torch.rand(b, device=device) * (width - w + 1))
        top = torch.floor(torch.rand(b, device=device) * (height - h + 1))
        left = torch.where(fallback, (width - w) / 2, left)
        top = torch.where(fallback, (height - h) / 2, top)
        return self.resample_crops(x, left, top, w, h)

    @staticmethod
    def resample_crops(x: torch.Tensor, left, top, w, h) -> torch.Tensor:
        """Crop box (left, top, w, h) of each image, resized bilinearly back to the image's size.

        Like torchvision (crop, then resize), only pixels inside the box are used: the sample
        points are clamped to the box's outermost pixel centres. The grid is built by
        broadcasting rather than with affine_grid's batched matmul.
        """
        b, _, height, width = x.shape
        device = x.device
        px = left[:, None] + (torch.arange(width, device=device) + 0.5)[None] * (w / width)[:, None]
        py = top[:, None] + (torch.arange(height, device=device) + 0.5)[None] * (h / height)[:, None]
        px = torch.minimum(torch.maximum(px, (left + 0.5)[:, None]), (left + w - 0.5)[:, None])
        py = torch.minimum(torch.maximum(py, (top + 0.5)[:, None]), (top + h - 0.5)[:, None])
        gx, gy = 2 * px / width - 1, 2 * py / height - 1  # grid_sample's [-1, 1] (align_corners=False)
        grid = torch.stack([gx[:, None, :].expand(b, height, width), gy[:, :, None].expand(b, height, width)], -1)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)

    def color_jitter(self, x: torch.Tensor, factors: torch.Tensor | None = None, order: torch.Tensor | None = None) -> torch.Tensor:
        """Colour jitter with per-sample ``factors`` (brightness, contrast, saturation, hue; (B, 4))
        applied in a per-sample ``order`` (a permutation of 0..3 per row); both random when omitted."""
        s, b, device = self._setting("color_strength"), len(x), x.device

        def factor(spread: float) -> torch.Tensor:
            return torch.empty(b, device=device).uniform_(max(0.0, 1 - spread), 1 + spread)

        if factors is None:
            hue = torch.empty(b, device=device).uniform_(-min(0.4 * s, 0.5), min(0.4 * s, 0.5))
            factors = torch.stack([factor(0.8 * s), factor(0.8 * s), factor(0.8 * s), hue], 1)
        ops = (
            lambda img, f: (img * f.view(-1, 1, 1, 1)).clamp(0, 1),
            lambda img, f: _blend(img, _gray(img).mean((1, 2, 3), keepdim=True), f),
            lambda img, f: _blend(img, _gray(img), f),
            _shift_hue,
        )
        # torchvision applies the four operations in a random order; here the order is drawn per
        # sample. At each position every operation runs on the whole batch and a mask keeps, per
        # sample, the one it draws there: four cheap element-wise passes, and no host wait to
        # learn how many samples drew which.
        if order is None:
            order = torch.rand(b, 4, device=device).argsort(1)
        for position in range(4):
            drawn, out = order[:, position].view(-1, 1, 1, 1), x
            for index, op in enumerate(ops):
                out = torch.where(drawn == index, op(x, factors[:, index]), out)
            x = out
        return x

    def gaussian_blur(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        b, c, height, width = x.shape
        sigma = torch.empty(b, device=x.device).uniform_(*self.blur_sigma)
        offsets = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2
        weights = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
        weights = weights / weights.sum(1, keepdim=True)
        weights = weights.repeat_interleave(c, 0)  # one 1-D kernel per (sample, channel)
        flat = rearrange(x, "b c h w -> 1 (b c) h w")
        pad = kernel // 2
        flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), weights[:, None, None, :], groups=b * c)
        flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), weights[:, None, :, None], groups=b * c)
        return rearrange(flat, "1 (b c) h w -> b c h w", b=b)
