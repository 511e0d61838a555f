"""MCMC cost against the raw computation, as ratios measured side by side in one run.

(a) K Langevin steps through ebmkit's sampler against the same K steps written inline with
    bare torch.autograd.grad, on the Improved-CD CIFAR-10 energy (6.64 M parameters) at batch 64.
    Goal: ratio <= 1.10.
(b) The augment transition on a 128x3x32x32 batch against torchvision's transforms applied
    image by image in a loop (the same CIFAR-10 preset). Goal: ebmkit >= 10x faster.

Variants alternate within each round, so load on a shared machine hits both alike. Each figure
is reported as the minimum over rounds (timeit's advice: the least disturbed run) and as the
median.

    python benchmarks/bench_mcmc.py [--rounds 5] [--steps 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import ebmkit

from ebmkit.plugins.improved_cd.resnet import ResNetEnergy
from ebmkit.plugins.mcmc.augment import Augment
from ebmkit.plugins.mcmc.chain import Chain, Scheduled
from timing import timed


def bench_langevin(rounds: int, steps: int, device: torch.device) -> tuple[float, float]:
    torch.manual_seed(0)
    energy = ResNetEnergy(data_shape=(3, 32, 32)).to(device)
    x0 = torch.rand(64, 3, 32, 32, device=device)
    step_size, noise_std = 100.0, 0.001  # the reference's CIFAR-10 settings; cost does not depend on them
    langevin = ebmkit.registries().get("transitions", "langevin").build({"step_size": step_size, "noise_std": noise_std, "clamp": (0.0, 1.0)})
    sampler = Chain(steps=steps, transitions=[Scheduled(langevin, 1)])

    def through_sampler():
        sampler.sample(energy, x0)

    def bare():
        x = x0
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
            x = (x - step_size * grad + noise_std * torch.randn_like(x)).clamp(0, 1)

    through_sampler(), bare()  # warm up
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(through_sampler, device))
        theirs.append(timed(bare, device))
    return ours, theirs


def bench_augment(rounds: int, device: torch.device) -> tuple[float, float]:
    import torchvision.transforms as T

    torch.manual_seed(0)
    batch = torch.rand(128, 3, 32, 32, device=device)
    ours = Augment(preset="cifar10")
    reference = T.Compose([
        T.RandomResizedCrop(32, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.4)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ])

    calls = 5  # several calls per timing, so one scheduler hiccup does not decide a round

    def batched():
        for _ in range(calls):
            ours(batch)

    def per_image():
        for _ in range(calls):
            torch.stack([reference(image) for image in batch])

    batched(), per_image()
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(batched, device) / calls)
        b.append(timed(per_image, device) / calls)
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, rounds {args.rounds}")

    ours, bare = bench_langevin(args.rounds, args.steps, device)
    print(f"(a) {args.steps} Langevin steps, resnet_ebm (6.64 M), batch 64, goal ratio <= 1.10")
    report("sampler", ours, "bare autograd", bare, lambda o, t: f"ratio {o / t:.3f}")
    batched, per_image = bench_augment(args.rounds * 8, device)
    print("(b) augment 128x3x32x32, goal >= 10x faster than torchvision image by image")
    report("ebmkit", batched, "torchvision per image", per_image, lambda o, t: f"speed-up {t / o:.1f}x")


def report(name, ours, other_name, other, ratio) -> None:
    for how, pick in (("min", min), ("median", statistics.median)):
        o, t = pick(ours), pick(other)
        print(f"    {how:6s} {name} {o * 1e3:8.2f} ms   {other_name} {t * 1e3:8.2f} ms   {ratio(o, t)}")


if __name__ == "__main__":
    main()
