"""The fixed cost of an update on small models: ebmkit against the same arithmetic written inline
with bare torch, timed side by side and interleaved over rounds.

Rows (each a ratio ebmkit / bare, from the medians of the rounds):

- ``quickstart update``: recipes/quickstart.toml's update (MLP of 33 k parameters, batch 256, 15
  Langevin steps from a replay buffer of 10 000 with reinitialisation 0.2, cd + 0.1 energy_l2,
  Adam, EMA 0.99) as the loop runs it, against one inline: the same module, a data batch, the
  buffer draw, the chain, the loss, backward, Adam's step and the EMA's lerp.
- ``chain sampler step``: the ``chain`` sampler's 15 Langevin steps on the quickstart MLP at batch
  256, against the same steps inline; given per step. Twice: without the per-step diagnostics
  (``ebmkit.diagnostics(False)``, as the training loop runs the updates it does not log) and with
  them (the energy and gradient norm of every step, as a logged update or a direct call has them).
- ``RBM CD-1 update, batch B``: recipes/rbm_shapes_cd1.toml's update (256 visible, 16 hidden; one
  block-Gibbs sweep from the data; cd on the free energy; SGD with momentum) at B = 10 and 100,
  against the sweep, the free-energy loss, backward and SGD's step inline.
- ``scikit-learn BernoulliRBM, batch 10`` (when scikit-learn is installed): its ``partial_fit``
  on the same binarised batches, an outside anchor (numpy, persistent CD-1, hand-written gradient).

Each round times ``--updates`` updates of each variant (the quickstart: a tenth of them, in ten
times the rounds); the order rotates every round. A row's
ratio is the median over rounds of ebmkit's time over bare torch's in the same round: on a
shared machine whose speed drifts, neighbours in time compare better than medians taken apart.

    python benchmarks/bench_small.py [--rounds 5] [--updates 200] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import interleaved  # noqa: E402

from ebmkit import diagnostics, stack_samples  # noqa: E402
from ebmkit._engine.loop import Trainer  # noqa: E402
from ebmkit._engine.run import setup  # noqa: E402
from ebmkit._recipes.recipe import load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def trainer_of(recipe: str, device: torch.device, *overrides: str) -> Trainer:
    out = Path(tempfile.mkdtemp(prefix="ebmkit-small-")) / "run"
    settings = [f"run.device='{device.type}'", "evaluators=[]", "train.checkpoint_every=0", "train.steps=1000000", *overrides]
    return Trainer(setup(load(RECIPES / recipe, settings), out, live=False))


def repeated(update: Callable[[], object], n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            update()
    return run


# -- the quickstart ---------------------------------------------------------------------------
def quickstart_bare(trainer: Trainer) -> Callable[[], None]:
    """The quickstart update inline, on a copy of the trainer's energy (its own Adam and EMA)."""
    import copy

    energy = copy.deepcopy(trainer.run.state.energy)
    ema = copy.deepcopy(energy).requires_grad_(False)
    device = trainer.run.device
    data = stack_samples(trainer.run.components.dataset, range(4096))[0].to(device)
    low, high = -4.0, 4.0
    buffer = low + (high - low) * torch.rand(10_000, 2, device=device)
    optimizer = torch.optim.Adam(energy.parameters(), lr=2e-3, betas=(0.0, 0.999))
    step_size, noise_std, batch = 0.03, (2 * 0.03) ** 0.5, 256
    params, ema_params = list(energy.parameters()), list(ema.parameters())
    position = [0]

    def update() -> None:
        x_pos = data[torch.randint(len(data), (batch,), device=device)]
        x = buffer[torch.randint(len(buffer), (batch,), device=device)]
        fresh = low + (high - low) * torch.rand(batch, 2, device=device)
        x = torch.where((torch.rand(batch, 1, device=device) < 0.2), fresh, x)
        for _ in range(15):
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x, None).sum(), x)
            x = x - step_size * grad + noise_std * torch.randn_like(x)
        x = x.detach()
        e_pos, e_neg = energy(x_pos, None), energy(x, None)
        loss = e_pos.mean() - e_neg.mean() + 0.1 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - 0.99)
        start = position[0] % len(buffer)
        buffer[start:start + batch] = x[: len(buffer) - start]
        position[0] += batch

    return update


def chain_bare(energy: torch.nn.Module, x0: torch.Tensor, steps: int, step_size: float) -> Callable[[], None]:
    noise_std = (2 * step_size) ** 0.5

    def sample() -> None:
        x = x0
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x, None).sum(), x)
            x = x - step_size * grad + noise_std * torch.randn_like(x)

    return sample


# -- the RBM ----------------------------------------------------------------------------------
def rbm_bare(trainer: Trainer) -> Callable[[], None]:
    """CD-1 inline: one block-Gibbs sweep from the batch, the free-energy loss, backward, SGD."""
    import copy

    rbm = copy.deepcopy(trainer.run.state.energy)
    device, batch = trainer.run.device, trainer.run.recipe.train.batch_size
    data = stack_samples(trainer.run.components.dataset, range(1000))[0].to(device).flatten(1)
    optimizer = torch.optim.SGD(rbm.parameters(), lr=0.05, momentum=0.5, weight_decay=2e-4)

    def free_energy(v: torch.Tensor) -> torch.Tensor:
        return -(v @ rbm.visible_bias) - torch.nn.functional.softplus(rbm.hidden_bias + v @ rbm.weight).sum(1)

    def update() -> None:
        v0 = data[torch.randint(len(data), (batch,), device=device)]
        with torch.no_grad():
            h = torch.bernoulli(torch.sigmoid(rbm.hidden_bias + v0 @ rbm.weight))
            v1 = torch.bernoulli(torch.sigmoid(rbm.visible_bias + h @ rbm.weight.T))
        loss = free_energy(v0).mean() - free_energy(v1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return update


def sklearn_rbm(trainer: Trainer, batch: int) -> Callable[[], None] | None:
    try:
        from sklearn.neural_network import BernoulliRBM
    except ImportError:
        return None
    data = stack_samples(trainer.run.components.dataset, range(1000))[0].flatten(1).numpy()
    model = BernoulliRBM(n_components=16, learning_rate=0.05, batch_size=batch, random_state=0)
    model.partial_fit(data[:batch])
    position = [0]

    def update() -> None:
        start = position[0] % (len(data) - batch)
        model.partial_fit(data[start:start + batch])
        position[0] += batch

    return update


# -- the table --------------------------------------------------------------------------------
def rows(rounds: int, updates: int, device: torch.device) -> list[dict]:
    out = []

    def row(name: str, variants: dict[str, Callable[[], None]], per: int, unit: str, rounds: int = rounds) -> None:
        times = interleaved(variants, rounds, device)
        medians = {k: statistics.median(v) / per for k, v in times.items()}
        ratios = [a / b for a, b in zip(times["ebmkit"], times["bare torch"], strict=True)]
        out.append({"row": name, "unit": unit, **{f"{k}_s": m for k, m in medians.items()},
                    "ratio": statistics.median(ratios), "ratio_quartiles": statistics.quantiles(ratios, n=4)[::2]})
        print(json.dumps(out[-1]), flush=True)

    quick = trainer_of("quickstart.toml", device, "train.log_every=100")
    # Rounds of a few updates, ten times as many: an update takes ~30 ms here, and the
    # machine's speed drifts less between neighbours close in time.
    short = max(1, updates // 10)
    row("quickstart update", {"ebmkit": repeated(lambda: quick.after_update(quick.update()), short),
                              "bare torch": repeated(quickstart_bare(quick), short)}, short, "update", rounds * 10)

    sampler, energy = quick.run.components.sampler, quick.run.model
    x0 = torch.rand(256, 2, device=device) * 8 - 4
    def quiet() -> None:
        with diagnostics(False):
            sampler.sample(energy, x0)

    chain = repeated(chain_bare(energy, x0, sampler.steps, 0.03), updates // 10)
    row("chain sampler step, no diagnostics", {"ebmkit": repeated(quiet, updates // 10), "bare torch": chain},
        (updates // 10) * sampler.steps, "step")
    row("chain sampler step, with diagnostics", {"ebmkit": repeated(lambda: sampler.sample(energy, x0), updates // 10),
                                                 "bare torch": chain}, (updates // 10) * sampler.steps, "step")

    for batch in (10, 100):
        rbm = trainer_of("rbm_shapes_cd1.toml", device, f"train.batch_size={batch}", "train.log_every=100")
        variants = {"ebmkit": repeated(lambda rbm=rbm: rbm.after_update(rbm.update()), updates * 2),
                    "bare torch": repeated(rbm_bare(rbm), updates * 2)}
        anchor = sklearn_rbm(rbm, batch) if batch == 10 else None
        if anchor is not None:
            variants["scikit-learn"] = repeated(anchor, updates * 2)
        row(f"RBM CD-1 update, batch {batch}", variants, updates * 2, "update")
    return out


def markdown(results: list[dict]) -> str:
    lines = ["| row | ebmkit | bare torch | ebmkit / bare (quartiles) | scikit-learn |", "|---|---|---|---|---|"]
    for r in results:
        unit = r["unit"]
        sk = f"{r['scikit-learn_s'] * 1e3:.3f} ms/{unit}" if "scikit-learn_s" in r else "–"
        low, high = r["ratio_quartiles"]
        lines.append(f"| {r['row']} | {r['ebmkit_s'] * 1e3:.3f} ms/{unit} | {r['bare torch_s'] * 1e3:.3f} ms/{unit} | "
                     f"**{r['ratio']:.2f}×** ({low:.2f}–{high:.2f}) | {sk} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = rows(args.rounds, args.updates, torch.device(args.device))
    print(markdown(results))


if __name__ == "__main__":
    main()
