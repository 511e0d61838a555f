"""The Improved-CD reference's test-time sampling for its FID and IS numbers, as one sampler.

``test_inception.py`` fills a 1000-chain buffer with 10 Langevin steps from U(0, 1), then
70 times draws 512 chains at random, augments them and runs 10 steps, then sweeps the
buffer 15 times (30 half-buffer iterations) with 10 steps and no augmentation. Per chain
that is, in expectation: 10 steps, then 70 · 512 / 1000 ≈ 36 rounds of (augment, 10 steps),
then 150 steps. Here every chain gets exactly that: 36 rounds of (10 steps, augment), then
160 steps (the round that follows the last augmentation and the 150). Step 100 (the
author's command in the reference's issue #14), noise 0.001, clamp to [0, 1]; the
augmentation is the CIFAR-10 one with the Gaussian blur (kernel 5) that only test time uses.
The reference evaluates the raw weights (``--ema False``): give ``ebmkit eval --raw``.
"""

from __future__ import annotations

from typing import Literal

from ebmkit.plugins.mcmc.augment import Augment
from ebmkit.plugins.mcmc.langevin import Langevin
from ebmkit.plugins.mcmc.rounds import AugmentedRounds


def improved_cd_test_time(
    step_size: float = 100.0,
    noise_std: float = 0.001,
    rounds: int = 36,
    steps_per_round: int = 10,
    final_steps: int = 160,
    augment_preset: Literal["cifar10", "celeba", "lsun", "imagenet", "stl", "object"] = "cifar10",
    blur_kernel: int = 5,
) -> AugmentedRounds:
    """The reference's FID/IS sampling schedule (``test_inception.py``), per chain."""
    return AugmentedRounds(
        transition=Langevin(step_size=step_size, noise_std=noise_std, noise_first=True, clamp=(0.0, 1.0)),
        augment=Augment(preset=augment_preset, blur_kernel=blur_kernel),
        rounds=rounds, steps_per_round=steps_per_round, final_steps=final_steps, divide_step_size=False,
    )
