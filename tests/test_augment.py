"""The batched augmentation transition: per-sample randomness and torchvision's exact ops."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from ebmkit.plugins.mcmc.augment import PRESETS, Augment, _blend, _gray, _shift_hue


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(64, 3, 16, 16)


def test_color_operations_match_torchvision(images):
    f = torch.rand(64) * 1.5 + 0.2
    hue = torch.rand(64) - 0.5
    for i in range(0, 64, 9):
        img = images[i]
        torch.testing.assert_close((img * f[i]).clamp(0, 1), TF.adjust_brightness(img, float(f[i])))
        torch.testing.assert_close(_blend(images, _gray(images).mean((1, 2, 3), keepdim=True), f)[i], TF.adjust_contrast(img, float(f[i])), atol=1e-5, rtol=0)
        torch.testing.assert_close(_blend(images, _gray(images), f)[i], TF.adjust_saturation(img, float(f[i])), atol=1e-5, rtol=0)
        torch.testing.assert_close(_shift_hue(images, hue)[i], TF.adjust_hue(img, float(hue[i])), atol=1e-5, rtol=0)


def test_color_jitter_applies_each_samples_own_order_like_torchvision(images):
    torch.manual_seed(1)
    factors = torch.stack([torch.rand(64) + 0.3, torch.rand(64) + 0.3, torch.rand(64) + 0.3, torch.rand(64) - 0.5], 1)
    order = torch.rand(64, 4).argsort(1)
    out = Augment().color_jitter(images, factors, order)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(64):
        expected = images[i]
        for op in order[i].tolist():
            expected = ops[op](expected, float(factors[i, op]))
        torch.testing.assert_close(out[i], expected, atol=2e-5, rtol=0)


def test_crop_of_the_whole_image_is_the_identity(images):
    aug = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    torch.testing.assert_close(aug.random_resized_crop(images), images, atol=1e-6, rtol=0)


def test_parameters_are_drawn_per_sample():
    torch.manual_seed(0)
    same = torch.rand(1, 3, 16, 16).expand(256, -1, -1, -1).contiguous()
    out = Augment(preset="celeba")(same)
    assert out.shape == same.shape and out.min() >= 0 and out.max() <= 1
    distinct = {tuple(o.flatten()[:8].tolist()) for o in out}
    assert len(distinct) > 250


def test_probabilities_of_flip_and_grayscale():
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 8, 8)
    flip_only = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), color_strength=0.0, gray_prob=0.0, blur_kernel=0)
    flipped = (flip_only(x) - x.flip(-1)).abs().flatten(1).max(1).values < 1e-6
    assert flipped.float().mean().item() == pytest.approx(0.5, abs=0.03)
    gray_only = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, color_strength=0.0, gray_prob=0.2, blur_kernel=0)
    out = gray_only(x)
    is_gray = (out[:, 0] - out[:, 1]).abs().flatten(1).max(1).values < 1e-6
    assert is_gray.float().mean().item() == pytest.approx(0.2, abs=0.03)


def test_blur_is_a_normalised_gaussian():
    x = torch.zeros(2, 3, 15, 15)
    x[:, :, 7, 7] = 1.0
    out = Augment(blur_kernel=5, blur_sigma=(1.0, 1.0)).gaussian_blur(x, 5)
    torch.testing.assert_close(out.sum((2, 3)), torch.ones(2, 3))
    expected = TF.gaussian_blur(x[0], [5, 5], [1.0, 1.0])
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)


def test_presets_follow_the_reference():
    assert PRESETS["cifar10"] == {"crop_scale": (0.08, 1.0), "color_strength": 1.0, "blur_kernel": 0}
    assert PRESETS["imagenet"]["crop_scale"] == (0.6, 1.0) and PRESETS["stl"]["blur_kernel"] == 11
    assert Augment(preset="celeba", blur_kernel=0)._setting("blur_kernel") == 0


def test_crops_match_torchvisions_crop_then_resize(images):
    torch.manual_seed(0)
    b = len(images)
    w = torch.randint(3, 17, (b,)).float()
    h = torch.randint(3, 17, (b,)).float()
    left = torch.floor(torch.rand(b) * (16 - w + 1))
    top = torch.floor(torch.rand(b) * (16 - h + 1))
    out = Augment.resample_crops(images, left, top, w, h)
    for i in range(0, b, 7):
        expected = TF.resized_crop(images[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [16, 16], antialias=False)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [{"blur_kernel": 4}, {"crop_scale": (0.9, 0.1)}, {"blur_sigma": (2.0, 0.1)}])
def test_bad_parameters_are_recipe_errors(bad, registries):
    entry = registries.get("transitions", "augment")
    _, problems = entry.check(bad, "transitions[0]")
    assert problems and "invalid value for transition 'augment'" in problems[0].message
