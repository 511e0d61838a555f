"""One improved-CD training iteration of ebmkit against its floor, with a breakdown, and peak memory.

The iteration is recipes/improved_cd_cifar10.toml's (the CIFAR-10 energy: 6.64 M parameters,
multi-scale, self-attention; K Langevin steps of step 100; a reservoir buffer of 10 000 that
augments what it hands out; cd + energy_l2 + kl + nn_entropy 0.3; Adam; gradient clipping 0.5;
EMA 0.99) at a reduced batch, on 32-px shapes images instead of CIFAR-10 files. The buffer is
filled to its capacity first, so every iteration starts chains from it and the entropy term is
on: a run's steady state.

The floor is the same arithmetic written inline with bare torch, the passes that no
implementation can avoid: K - 1 steps of forward and input gradient, the last one with its graph
(``create_graph=True``), the positive and negative forwards, the KL forward with the parameters
frozen, and the backward of the loss.

    python benchmarks/bench_training.py [--batch 16] [--steps 10] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.func import functional_call

from ebmkit._engine.loop import Trainer
from ebmkit._host.protocols import TrainBatch
from ebmkit._recipes.recipe import load
from ebmkit._engine.run import setup
from timing import interleaved, summary, synchronize

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "improved_cd_cifar10.toml"
PLAIN_CD = "losses=[{name = 'cd', weight = 1.0}, {name = 'energy_l2', weight = 1.0}]"


def build_trainer(batch: int, steps: int, device: torch.device, extra: tuple[str, ...] = ()) -> Trainer:
    """The CIFAR-10 recipe's trainer at ``batch`` and ``steps``, its buffer full."""
    overrides = [
        f"run.device='{device.type}'", "data={name = 'shapes', size = 2048, image_size = 32}",
        f"train.batch_size={batch}", f"sampler.steps={steps}", "evaluators=[]", "train.log_every=50",
        "train.checkpoint_every=0", "train.energy_bound=1e9", *extra,
    ]
    out = Path(tempfile.mkdtemp(prefix="ebmkit-bench-"))
    trainer = Trainer(setup(load(RECIPE, overrides), out / "run", live=False))
    buffer = trainer.run.components.buffer
    while len(buffer) < buffer.capacity:
        buffer.push(torch.rand(500, 3, 32, 32, device=device))
    return trainer


def ebmkit_iteration(trainer: Trainer) -> Callable[[], None]:
    """One update and what follows it (logging every log_every-th), as the loop runs it."""
    return lambda: trainer.after_update(trainer.update())


def floor_iteration(trainer: Trainer, phases: dict[str, float] | None = None) -> Callable[[], None]:
    """The unavoidable passes of the same iteration, inline, on the same energy and batch.

    With ``phases``, the sampler's part and the loss-and-backward part are timed apart into it.
    """
    energy, state, device = trainer.run.model, trainer.run.state, trainer.run.device
    transition = trainer.run.components.sampler.transitions[0].transition
    step_size, steps = transition.step_size, trainer.run.components.sampler.steps
    batch = trainer.run.recipe.train.batch_size
    x_pos = torch.rand(batch, 3, 32, 32, device=device)
    x0 = torch.rand(batch, 3, 32, 32, device=device)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        x = x0
        for _ in range(steps - 1):
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x)
            x = x - step_size * grad
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
        return x - step_size * grad

    def loss_and_backward(x_kl: torch.Tensor) -> None:
        frozen = {name: p.detach() for name, p in energy.named_parameters()}
        e_pos, e_neg = energy(x_pos), energy(x_kl.detach())
        e_kl = functional_call(energy, frozen, (x_kl,))
        loss = e_pos.mean() - e_neg.mean() + e_kl.mean()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()

    def iteration() -> None:
        if phases is None:
            loss_and_backward(sample())
            return
        synchronize(device)
        started = time.perf_counter()
        x_kl = sample()
        synchronize(device)
        middle = time.perf_counter()
        loss_and_backward(x_kl)
        synchronize(device)
        phases["sampler (K steps, the last with its graph)"] = middle - started
        phases["loss terms and backward"] = time.perf_counter() - middle

    return iteration


def breakdown(trainer: Trainer) -> dict[str, float]:
    """Seconds per phase of one update (each phase timed on its own, the device synchronised)."""
    run, state, device = trainer.run, trainer.run.state, trainer.run.device
    out: dict[str, float] = {}

    def phase(name: str, fn: Callable[[], object]) -> object:
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        out[name] = out.get(name, 0.0) + time.perf_counter() - start
        return result

    components = run.components
    x_pos, cond = phase("data batch", lambda: state.data.next_batch())
    x_pos = x_pos.to(device)
    batch = TrainBatch(run.model, x_pos, cond, reference_set=trainer.reference_set)
    x0 = phase("buffer draw and augmentation", lambda: components.buffer.draw(len(x_pos), x_pos))
    result = phase("sampler (K steps, the last with its graph)",
                   lambda: components.sampler.sample(run.model, x0, cond=cond, keep_graph=trainer.graph_steps))
    batch.x_neg, batch.x_neg_graph = result.x, result.x_graph
    total, metrics = phase("loss terms and backward", lambda: trainer.losses(batch))
    settings = run.recipe.train
    phase("gradient clipping", lambda: torch.nn.utils.clip_grad_norm_(state.energy.parameters(), settings.grad_clip))
    phase("divergence flag", lambda: bool(torch.isfinite(total.detach())))
    phase("optimizer step", state.optimizer.step)
    phase("EMA", lambda: state.ema.update(state.energy))
    phase("buffer push", lambda: components.buffer.push(result.x))
    phase("logging (per logged update)", lambda: run.log(state.step, metrics))
    out["logging (per logged update)"] /= settings.log_every  # amortised over the logging window
    return out


def peak_memory(batch: int, steps: int, device: str, losses: str) -> dict[str, float]:
    """Peak memory of a training iteration (the third), in a fresh process.

    On CUDA, ``torch.cuda.max_memory_allocated``; on the CPU, the peak of the profiler's memory
    timeline (every tensor allocation, weights, optimizer state and buffer included, which the
    resident set would blur with the allocator's caching). ``base_mb`` is what was allocated
    before the iteration, ``iteration_mb`` what the iteration added at its peak.
    """
    code = f"""
import json, sys, tempfile, warnings, torch
sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
from bench_training import build_trainer, PLAIN_CD
device = torch.device({device!r})
trainer = build_trainer({batch}, {steps}, device, (PLAIN_CD,) if {losses!r} == "plain" else ())
for _ in range(2):
    trainer.after_update(trainer.update())
if device.type == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    trainer.after_update(trainer.update())
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated()
else:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        trainer.after_update(trainer.update())
    path = tempfile.mktemp(suffix=".json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof.export_memory_timeline(path, device="cpu")
    times, sizes = json.load(open(path))
    totals = [sum(s) for s in sizes]
    base, peak = totals[0], max(totals)
mb = 2 ** 20
print(json.dumps({{"base_mb": base / mb, "peak_mb": peak / mb, "iteration_mb": (peak - base) / mb}}))
"""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    trainer = build_trainer(args.batch, args.steps, device)
    times = interleaved({"ebmkit": ebmkit_iteration(trainer), "floor": floor_iteration(trainer)}, args.rounds, device)
    for name, t in times.items():
        print(name, summary(t))
    print(json.dumps(breakdown(trainer), indent=1))
    for losses in ("improved", "plain"):
        print(losses, peak_memory(args.batch, args.steps, args.device, losses))


if __name__ == "__main__":
    main()
