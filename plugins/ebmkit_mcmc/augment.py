from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from einops import rearrange

from ebmkit.protocols import StepContext, StepResult

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


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (x.dim() - 1)))


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * a + (1 - f) * b).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = torch.stack([
        torch.stack([v, q, p, p, t, v], 1), torch.stack([t, v, v, q, p, p], 1), torch.stack([p, p, t, v, v, q], 1)
    ], 1)  # (B, 3 channels, 6 sectors, H, W)
    return choices.gather(2, i[:, None, None].expand(-1, 3, 1, -1, -1)).squeeze(2)


@attrs.frozen(kw_only=True)
class Augment:
    """Batched data augmentation with independent random parameters per sample (SimCLR-style, as in Improved CD).

    Random resized crop, horizontal flip, colour jitter (applied with ``color_prob``, its four
    operations in a random order per sample), random grayscale and Gaussian blur, all as
    tensor operations on the batch's device. ``preset`` takes the Improved-CD reference's
    settings for a dataset; a parameter given explicitly overrides the preset.
    """

    preset: Literal["cifar10", "celeba", "lsun", "imagenet", "stl", "object"] = "cifar10"
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    color_strength: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    color_prob: float = attrs.field(default=0.8, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    gray_prob: float = attrs.field(default=0.2, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    blur_kernel: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    blur_prob: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def _setting(self, name: str):
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value

    def step(self, energy, x: torch.Tensor, ctx: StepContext) -> StepResult:
        return StepResult(self(x.detach()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            from ebmkit import EbmkitError

            raise EbmkitError(f"the augment transition needs RGB image batches (B, 3, H, W), got shape {tuple(x.shape)}")
        x = self.random_resized_crop(x)
        if self.flip:
            x = torch.where(_per_sample(torch.rand(len(x), device=x.device) < 0.5, x), x.flip(-1), x)
        if self._setting("color_strength") > 0 and self.color_prob > 0:
            jittered = self.color_jitter(x)
            x = torch.where(_per_sample(torch.rand(len(x), device=x.device) < self.color_prob, x), jittered, x)
        if self.gray_prob > 0:
            x = torch.where(_per_sample(torch.rand(len(x), device=x.device) < self.gray_prob, x), _gray(x).expand_as(x), x)
        kernel = self._setting("blur_kernel")
        if kernel and self.blur_prob > 0:
            x = torch.where(_per_sample(torch.rand(len(x), device=x.device) < self.blur_prob, x), self.gaussian_blur(x, kernel), x)
        return x

    def random_resized_crop(self, x: torch.Tensor, tries: int = 10) -> torch.Tensor:
        b, _, height, width = x.shape
        device, area = x.device, height * width
        low, high = self._setting("crop_scale")
        log_ratio = torch.log(torch.tensor(self.crop_ratio, device=device))
        scale = torch.empty(b, tries, device=device).uniform_(low, high)
        ratio = torch.exp(torch.empty(b, tries, device=device).uniform_(float(log_ratio[0]), float(log_ratio[1])))
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
        theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 1, 1] = w / width, h / height
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 2] = (2 * top + h) / height - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def color_jitter(self, x: torch.Tensor) -> torch.Tensor:
        s, b, device = self._setting("color_strength"), len(x), x.device

        def factor(spread: float) -> torch.Tensor:
            return torch.empty(b, device=device).uniform_(max(0.0, 1 - spread), 1 + spread)

        brightness, contrast, saturation = factor(0.8 * s), factor(0.8 * s), factor(0.8 * s)
        hue = torch.empty(b, device=device).uniform_(-min(0.4 * s, 0.5), min(0.4 * s, 0.5))
        # torchvision applies the four operations in a random order; here the order is drawn per sample.
        order = torch.rand(b, 4, device=device).argsort(1)
        for position in range(4):
            op = order[:, position]
            candidates = (
                (x * brightness.view(-1, 1, 1, 1)).clamp(0, 1),
                _blend(x, _gray(x).mean((1, 2, 3), keepdim=True), contrast),
                _blend(x, _gray(x), saturation),
                self._shift_hue(x, hue),
            )
            out = x
            for index, candidate in enumerate(candidates):
                out = torch.where(_per_sample(op == index, x), candidate, out)
            x = out
        return x

    @staticmethod
    def _shift_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
        hsv = _rgb_to_hsv(x)
        h = (hsv[:, 0] + hue.view(-1, 1, 1)) % 1.0
        return _hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))

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
