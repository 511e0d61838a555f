"""Langevin sampling throughput: torchebm's LangevinDynamics against ebmkit's chain, side by side.

Both samplers run K Langevin steps from the same x0 on the same energy module; the two alternate
within each round (ebmkit first on even rounds, torchebm first on odd ones), so load on a shared
machine hits both alike. Figures are the minimum over rounds (the least disturbed run) and the
median.

torchebm is *not* a dependency of ebmkit. Install it into a separate folder, without its
dependencies (its only hard one is torch, which must stay the one ebmkit already has), and point
the benchmark at that folder:

    .venv/bin/pip install --no-deps --target /tmp/tebm/site torchebm
    python benchmarks/bench_torchebm.py --torchebm-path /tmp/tebm/site [--rounds 5] [--steps 10]

(or set TORCHEBM_PATH). Written against torchebm 0.8.9.

How the two steps compare (read from torchebm 0.8.9's source):

- ebmkit (``ebmkit.plugins.mcmc.langevin.Langevin`` with ``noise_std`` set):
      x <- x - eta * grad E(x) + sigma * xi,                  sigma = noise_std
- torchebm (``LangevinDynamics`` -> ``EulerMaruyamaIntegrator.step``):
      x <- x + eta * (-grad E(x)) + sqrt(2 * noise_scale**2) * sqrt(eta) * xi
  i.e. its noise std is ``noise_scale * sqrt(2 * eta)``, not ``noise_scale``. The benchmark
  therefore passes ``noise_scale = noise_std / sqrt(2 * step_size)`` so both add the same noise.
  (``noise_std = sqrt(2 * eta)`` is exact unadjusted Langevin, ``noise_scale = 1``.) torchebm
  rejects ``noise_scale <= 0`` as a float, so noise 0 is passed as ``ConstantScheduler(0.0)``.
  Both draw one ``randn_like(x)`` from the global generator after the gradient each step, so
  with the same seed the two chains agree up to float rounding, noise included; the function
  checks that (noise 0 and seeded noise) before timing. Clamping, when asked for, comes after
  the noise in both.

Work per step: exactly one energy forward and one ``autograd.grad`` w.r.t. x in both (torchebm's
``BaseModel.gradient``: ``forward`` + ``autograd.grad(E, x, grad_outputs=ones)``; ebmkit's
``energy_and_grad``: ``autograd.grad(E.sum(), x)``). Besides that, torchebm's Euler-Maruyama
step does a few full-size element-wise ops (negating the gradient, copying it into a
``(1, *x.shape)`` stage buffer, an ``einsum`` over the one stage, scaling the noise twice), makes
a ``t`` zeros tensor per step, checks the energy's shape and ``grad_fn`` and walks its module tree
to step the (constant) schedulers; ebmkit records two per-step statistics (mean energy and mean
per-sample gradient norm: one extra reduction over the gradient). torchebm is run in its cheapest
mode: ``return_trajectory=False`` (no trajectory copy per step), ``return_diagnostics=False``
(which would cost one extra energy *forward* per kept step plus mean/var over the batch),
``thin=1``, no mixed precision, the default ``euler_maruyama`` integrator (one drift evaluation
per step; ``heun`` etc. would evaluate the gradient more than once). Counted with a
TorchDispatchMode on the MLP case: the same energy forward/backward ops in both, 35.4 aten ops a
step in all for ebmkit against 42 for torchebm.

On a shared 2-core machine, 2 threads per process oversubscribe the cores and swamp the small
case's timings; ``--threads 1`` gives steadier figures there.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

import torch
from torch import nn

import ebmkit
from ebmkit.plugins.mcmc.chain import Chain, Scheduled
from timing import timed

INSTALL_HINT = (
    "torchebm is not importable. Install it into a separate folder (never into ebmkit's "
    "environment, and without its dependencies so torch stays as it is):\n"
    "    .venv/bin/pip install --no-deps --target DIR torchebm\n"
    "then run with --torchebm-path DIR (or TORCHEBM_PATH=DIR)."
)


def load_torchebm(path: str | None = None):
    """Import torchebm, with ``path`` (or $TORCHEBM_PATH) put first on sys.path. None if absent."""
    path = path or os.environ.get("TORCHEBM_PATH")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import torchebm
        from torchebm.samplers import LangevinDynamics  # noqa: F401
    except ImportError:
        return None
    return torchebm


def _as_torchebm_model(energy: nn.Module):
    """The ebmkit energy (x, cond) -> (B,) as a torchebm BaseModel (forward(x) -> (B,))."""
    from torchebm.core import BaseModel

    class EbmkitEnergy(BaseModel):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x, None)

    return EbmkitEnergy(energy)


def _torchebm_sampler(model, step_size: float, noise_std: float, clamp):
    from torchebm.core import ConstantScheduler
    from torchebm.samplers import LangevinDynamics

    # torchebm's noise std is noise_scale * sqrt(2 * step_size); it refuses a float noise_scale <= 0
    noise_scale = noise_std / math.sqrt(2 * step_size) if noise_std > 0 else ConstantScheduler(0.0)
    return LangevinDynamics(model, step_size=step_size, noise_scale=noise_scale, clamp=clamp)


def _ebmkit_sampler(steps: int, step_size: float, noise_std: float, clamp) -> Chain:
    config = {"step_size": step_size, "noise_std": noise_std}
    if clamp is not None:
        config["clamp"] = clamp
    langevin = ebmkit.registries().get("transitions", "langevin").build(config)
    return Chain(steps=steps, transitions=[Scheduled(langevin, 1)])


def check_equivalence(energy: nn.Module, x0: torch.Tensor, steps: int, step_size: float, noise_std: float,
                      clamp=None, seed: int = 1234) -> dict:
    """Max |difference| between the two samplers' final states: noise 0, then seeded noise.

    Raises AssertionError unless both are allclose (rtol 1e-4, atol 1e-5)."""
    model = _as_torchebm_model(energy)
    out = {}
    for name, sigma in (("noise0", 0.0), ("seeded_noise", noise_std)):
        ours = _ebmkit_sampler(steps, step_size, sigma, clamp)
        theirs = _torchebm_sampler(model, step_size, sigma, clamp)
        torch.manual_seed(seed)
        a = ours.sample(energy, x0).x
        torch.manual_seed(seed)
        b = theirs.sample(x=x0, n_steps=steps)
        diff = (a - b).abs().max().item()
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), f"{name}: samplers disagree, max |diff| {diff:.3g}"
        out[name] = diff
    return out


def torchebm_vs_ebmkit(energy: torch.nn.Module, x0: torch.Tensor, steps: int, step_size: float, noise_std: float,
                       rounds: int, *, clamp: tuple[float, float] | None = None, check: bool = True) -> dict:
    """Time ``steps`` Langevin steps from ``x0`` through ebmkit's chain and torchebm's sampler.

    Both run once untimed first (warm-up); with ``check`` that warm-up is the equivalence check
    (noise 0 over ``steps`` steps, and seeded noise over min(steps, 3) steps). The two then
    alternate within each of ``rounds`` rounds. Returns absolute seconds (min and median over
    rounds), steps per second, and the ratio torchebm / ebmkit (> 1: torchebm is slower).
    """
    torchebm = load_torchebm()
    if torchebm is None:
        raise ImportError(INSTALL_HINT)
    device = x0.device
    model = _as_torchebm_model(energy)
    ours = _ebmkit_sampler(steps, step_size, noise_std, clamp)
    theirs = _torchebm_sampler(model, step_size, noise_std, clamp)

    def run_ebmkit():
        ours.sample(energy, x0)

    def run_torchebm():
        theirs.sample(x=x0, n_steps=steps, return_trajectory=False, return_diagnostics=False, thin=1)

    equivalence = None
    if check:
        equivalence = check_equivalence(energy, x0, steps, step_size, 0.0, clamp)
        equivalence.update({k: v for k, v in check_equivalence(
            energy, x0, min(steps, 3), step_size, noise_std, clamp).items() if k == "seeded_noise"})
    run_ebmkit(), run_torchebm()  # warm up the samplers actually timed

    times = {"ebmkit": [], "torchebm": []}
    for r in range(rounds):
        order = (("ebmkit", run_ebmkit), ("torchebm", run_torchebm))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            times[name].append(timed(fn, device))

    result: dict = {"torchebm_version": torchebm.__version__, "steps": steps, "batch": x0.shape[0],
                    "rounds": rounds, "equivalence_max_abs_diff": equivalence}
    for name, ts in times.items():
        lo, med = min(ts), statistics.median(ts)
        result[name] = {"min_s": lo, "median_s": med, "steps_per_s_min": steps / lo,
                        "steps_per_s_median": steps / med, "times_s": ts}
    result["ratio_min"] = result["torchebm"]["min_s"] / result["ebmkit"]["min_s"]
    result["ratio_median"] = result["torchebm"]["median_s"] / result["ebmkit"]["median_s"]
    return result


class MLPEnergy(nn.Module):
    """A tiny 2-D energy, 2 -> 64 -> 64 -> 1 with SiLU: per-step overhead dominates."""

    def __init__(self, dim: int = 2, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="Langevin steps for the CIFAR-10 ResNet case")
    parser.add_argument("--tiny-steps", type=int, default=100, help="Langevin steps for the tiny MLP case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torchebm-path", default=os.environ.get("TORCHEBM_PATH"),
                        help="folder torchebm was installed into with pip --target (default $TORCHEBM_PATH)")
    args = parser.parse_args()

    torchebm = load_torchebm(args.torchebm_path)
    if torchebm is None:
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, torchebm {torchebm.__version__} ({os.path.dirname(torchebm.__file__)}), "
          f"device {device}, threads {torch.get_num_threads()}")

    from ebmkit.plugins.improved_cd.resnet import ResNetEnergy

    torch.manual_seed(0)
    cases = [
        # the reference's CIFAR-10 settings (as in bench_mcmc.py); cost does not depend on them
        ("resnet_ebm 6.64M, 3x32x32", ResNetEnergy(data_shape=(3, 32, 32)).to(device),
         torch.rand(32, 3, 32, 32, device=device), args.steps, 100.0, 0.001, (0.0, 1.0), args.rounds),
        # exact unadjusted Langevin: noise_std = sqrt(2 * step) (torchebm noise_scale 1); cheap, so 4x the rounds
        ("MLP 2-64-64-1 SiLU", MLPEnergy().to(device), torch.randn(256, 2, device=device),
         args.tiny_steps, 0.01, math.sqrt(2 * 0.01), None, 4 * args.rounds),
    ]
    rows = []
    for name, energy, x0, steps, step_size, noise_std, clamp, rounds in cases:
        r = torchebm_vs_ebmkit(energy, x0, steps, step_size, noise_std, rounds, clamp=clamp)
        eq = r["equivalence_max_abs_diff"]
        print(f"{name}: batch {x0.shape[0]}, {steps} steps, {rounds} rounds; equivalence max|diff| "
              f"noise 0 {eq['noise0']:.2e}, seeded noise {eq['seeded_noise']:.2e}")
        rows.append((name, r))

    print()
    header = (f"{'case':28s} {'stat':6s} {'ebmkit ms':>10s} {'torchebm ms':>12s} {'ebmkit st/s':>12s} "
              f"{'torchebm st/s':>14s} {'torchebm/ebmkit':>16s}")
    print(header)
    print("-" * len(header))
    for name, r in rows:
        for stat in ("min", "median"):
            o, t = r["ebmkit"][f"{stat}_s"], r["torchebm"][f"{stat}_s"]
            print(f"{name:28s} {stat:6s} {o * 1e3:10.2f} {t * 1e3:12.2f} {r['steps'] / o:12.1f} "
                  f"{r['steps'] / t:14.1f} {r[f'ratio_{stat}']:16.3f}")


if __name__ == "__main__":
    main()
