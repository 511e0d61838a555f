"""Turning a validated recipe into a training run and its run folder.

A run folder holds ``recipe.toml`` (the resolved recipe), ``run.json`` (which plugin
supplied each component), ``metrics.jsonl`` (one JSON object per line), ``checkpoints/``
(safetensors weights) and whatever the evaluators write (plots, sample grids).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import safetensors.torch
import tomli_w
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ebmkit.errors import EbmkitError, TrainingDiverged
from ebmkit.protocols import EvalContext, Scheduled, TrainBatch
from ebmkit.recipe import Recipe


def default_out_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    stem = recipe.run.name or Path(recipe.source).stem
    return root / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"


def noise_for(dataset: Any, device: torch.device) -> Callable[[int], torch.Tensor]:
    """Fresh chain starts: uniform over the data's domain, or standard normal."""
    shape = tuple(dataset.sample_shape)
    domain = getattr(dataset, "domain", None)

    def noise(n: int) -> torch.Tensor:
        if domain is None:
            return torch.randn(n, *shape, device=device)
        low, high = domain
        return torch.rand(n, *shape, device=device) * (high - low) + low

    return noise


def _batches(dataset: Any, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    if len(dataset) < batch_size:
        raise EbmkitError(f"the dataset has {len(dataset)} samples, fewer than one batch of {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)
    while True:
        for item in loader:
            if isinstance(item, list | tuple):
                yield item[0], item[1]
            else:
                yield item, None


@attrs.define
class RunResult:
    out_dir: Path
    metrics: dict[str, float]


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path
        self.latest: dict[str, float] = {}

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.latest.update(metrics)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")


class EMA:
    """An exponential moving average of a module's parameters and buffers: ema <- d*ema + (1-d)*current."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        ema_params, params = list(self.module.parameters()), list(module.parameters())
        torch._foreach_lerp_(ema_params, params, 1 - self.decay)
        for ema_buffer, buffer in zip(self.module.buffers(), module.buffers(), strict=True):
            ema_buffer.copy_(buffer)


def save_checkpoint(
    out_dir: Path, step: int, energy: torch.nn.Module, recipe: Recipe, ema: EMA | None = None, buffer: Any = None,
    energy_spec: dict[str, Any] | None = None,
) -> Path:
    """Write weights (and EMA weights, and the buffer's state) as safetensors, plus meta.json.

    ``meta.json`` records how to rebuild the energy (registered name, parameters, data shape,
    number of classes), so that ``ebmkit.load`` needs neither the data nor any pickle.
    """
    folder = out_dir / "checkpoints" / f"step_{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    if buffer is not None:
        state = {k: v.contiguous() for k, v in buffer.state_dict().items() if isinstance(v, torch.Tensor)}
        safetensors.torch.save_file(state, str(folder / "buffer.safetensors"), metadata={"step": str(step)})
    safetensors.torch.save_model(energy, str(folder / "energy.safetensors"), metadata={"step": str(step)})
    if ema is not None:
        safetensors.torch.save_model(ema.module, str(folder / "ema.safetensors"), metadata={"step": str(step), "decay": str(ema.decay)})
    meta = {"format": 1, "step": step, "energy": energy_spec, "recipe": recipe.data}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def train(recipe: Recipe, out_dir: Path, *, console: Console | None = None, live: bool | None = None) -> RunResult:
    """Build every component of ``recipe``, train, evaluate, and fill ``out_dir``."""
    console = console or Console(stderr=True)
    live = console.is_terminal if live is None else live
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "recipe.toml").write_text(f"# resolved from {recipe.source}\n" + tomli_w.dumps(recipe.data))
    torch.manual_seed(recipe.run.seed)
    try:
        device = torch.device(recipe.run.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise EbmkitError(f"[run].device = {recipe.run.device!r} is not usable here: {exc}") from None

    settings = recipe.train
    data_spec = recipe.one("data")
    dataset = data_spec.build()
    noise = noise_for(dataset, device)
    energy_table = recipe.one("energy")
    energy = energy_table.build(data_shape=tuple(dataset.sample_shape), num_classes=dataset.num_classes).to(device)
    energy_spec = {
        "name": energy_table.entry.name, "params": energy_table.values,
        "data_shape": list(dataset.sample_shape), "num_classes": dataset.num_classes,
    }
    transitions = [Scheduled(s.build(), s.core["every"], s.entry.name) for s in recipe.many("transitions")]
    sampler = recipe.one("sampler").build(transitions=transitions)
    buffer_spec = recipe.one("buffer")
    buffer = buffer_spec.build(noise=noise) if buffer_spec else None
    losses = [(s.core["weight"], s.entry.name, s.build()) for s in recipe.many("losses")]
    optimizer = recipe.one("optim").build(params=list(energy.parameters()))
    evaluators = [(s.core["every"], s.entry.name, s.build()) for s in recipe.many("evaluators")]
    ema = EMA(energy, settings.ema) if settings.ema is not None else None
    needs_graph = max((int(getattr(loss, "needs_graph", 0)) for _, _, loss in losses), default=0)
    needs_samples = any(getattr(loss, "needs_samples", True) for _, _, loss in losses)
    if buffer is not None and not needs_samples:
        console.print("[yellow]warning:[/] \\[buffer] is never used: no loss term of this recipe needs negative samples")

    used = {spec.where: {"name": spec.entry.name, "plugin": spec.entry.plugin, "distribution": spec.entry.distribution}
            for specs in recipe.components.values() for spec in specs}
    (out_dir / "run.json").write_text(json.dumps({"source": recipe.source, "components": used}, indent=1))
    log = MetricsLog(out_dir / "metrics.jsonl")

    def evaluate(step: int, only_due: bool) -> None:
        for every, name, evaluator in evaluators:
            if only_due and not (every and step % every == 0):
                continue
            # Evaluators see the EMA weights when there are any, as is usual for EBMs. They draw
            # from a forked random state, so adding one does not change the training run.
            model = ema.module if ema is not None else energy
            ctx = EvalContext(model, dataset, sampler, noise, out_dir, step, device, buffer)
            model.eval()
            try:
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    metrics = evaluator.evaluate(ctx)
            finally:
                model.train()
            if metrics:
                log.write(step, {f"{name}/{k}": v for k, v in metrics.items()})
                shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                console.print(f"[bold]step {step}[/] {name}: {shown}")

    if settings.eval_at_start and evaluators:
        evaluate(0, only_due=False)

    batches = _batches(dataset, settings.batch_size, recipe.run.seed)
    progress = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not live,
    )
    started = time.perf_counter()
    window_start, window_steps = started, 0
    train_seconds = 0.0  # training alone: evaluations and checkpoints are not counted
    last_step = 0
    with progress:
        task = progress.add_task("train", total=settings.steps, stats="")
        for step in range(1, settings.steps + 1):
            step_started = time.perf_counter()
            x_pos, cond = next(batches)
            x_pos = x_pos.to(device)
            cond = cond.to(device) if cond is not None else None
            n = x_pos.shape[0]
            result = None  # stays None when no loss term needs negative samples
            if needs_samples:
                x0 = buffer.draw(n, x_pos) if buffer is not None else noise(n)
                result = sampler.sample(energy, x0, cond=cond, keep_last_graph=needs_graph)
            batch = TrainBatch(energy, x_pos, None if result is None else result.x, cond, result, buffer)
            total = torch.zeros((), device=device)
            metrics: dict[str, float] = {}
            for weight, name, loss in losses:
                out = loss(energy, batch)
                total = total + weight * out.value
                metrics[f"loss/{name}"] = float(out.value.detach())
                metrics.update(out.metrics)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if settings.grad_clip:
                metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(energy.parameters(), settings.grad_clip))
            e_pos = float(batch.e_pos.detach().mean())
            e_neg = None if result is None else float(batch.e_neg.detach().mean())
            loss_value = float(total.detach())
            if not all(map(math.isfinite, (loss_value, e_pos, 0.0 if e_neg is None else e_neg))):
                sampled = "" if e_neg is None else f", E- {e_neg}"
                hint = "" if e_neg is None else " or the sampler's step size, or raise the energy_l2 weight"
                raise TrainingDiverged(
                    f"training diverged at step {step}: loss {loss_value}, E+ {e_pos}{sampled} are not all finite; "
                    f"lower [optim].lr{hint}"
                )
            if settings.energy_bound is not None and abs(e_pos) > settings.energy_bound:
                raise TrainingDiverged(
                    f"training diverged at step {step}: |mean E+| = {abs(e_pos):.3g} exceeds [train].energy_bound = "
                    f"{settings.energy_bound}"
                )
            optimizer.step()
            if ema is not None:
                ema.update(energy)
            # After the losses, so that the buffer's samples (the entropy term's reference set)
            # are earlier chains, never the current ones themselves.
            if buffer is not None and result is not None:
                buffer.push(result.x)
            if device.type == "cuda":  # count the queued GPU work in this step's time, not the next evaluation's
                torch.cuda.synchronize(device)
            train_seconds += time.perf_counter() - step_started
            last_step = step
            out_of_time = settings.time_limit_s is not None and train_seconds >= settings.time_limit_s
            metrics.update({"loss": loss_value, "e_pos": e_pos, "train_s": train_seconds})
            if e_neg is not None:
                metrics["e_neg"] = e_neg
            for key, values in ({} if result is None else result.trace).items():
                if values:
                    metrics[f"sampler/{key}"] = values[-1]
            window_steps += 1
            if step % settings.log_every == 0 or step == settings.steps or out_of_time:
                now = time.perf_counter()
                metrics["steps_per_s"] = window_steps / max(now - window_start, 1e-9)
                window_start, window_steps = now, 0
                log.write(step, metrics)
                stats = f"loss {loss_value:+.3f}  E+ {e_pos:+.3f}"
                stats += f"  E- {e_neg:+.3f}" if e_neg is not None else ""
                stats += f"  {metrics['steps_per_s']:.1f} it/s"
                progress.update(task, stats=stats)
                if not live:
                    console.print(f"step {step}/{settings.steps}  {stats}")
            progress.advance(task)
            if out_of_time:
                console.print(f"\\[train].time_limit_s = {settings.time_limit_s} reached after {step} updates")
                break
            if settings.checkpoint_every and step % settings.checkpoint_every == 0:
                save_checkpoint(out_dir, step, energy, recipe, ema, buffer, energy_spec)
            if step != settings.steps:
                evaluate(step, only_due=True)

    save_checkpoint(out_dir, last_step, energy, recipe, ema, buffer, energy_spec)
    evaluate(last_step, only_due=False)
    elapsed = time.perf_counter() - started
    log.write(last_step, {"wall_s": elapsed, "train_s": train_seconds, "updates": last_step})
    return RunResult(out_dir, dict(log.latest))
