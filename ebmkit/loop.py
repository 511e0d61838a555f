"""The training loop.

::

    setup (ebmkit.run.setup: build, threads, folder, state, ebmkit_wrap_energy)
    ebmkit_run_start
    evaluate "start"
    repeat until [train].steps updates (or [train].time_limit_s of training):
        update: draw starts -> sample -> losses -> step -> after-step
        ebmkit_step_end -> log (every log_every) -> checkpoint (every checkpoint_every) -> evaluate "step"
    checkpoint -> evaluate "end"
    ebmkit_run_end (also when the run fails)

Every piece of changing state lives in ``run.state`` (:class:`ebmkit.state.RunState`); the
loop itself holds only what it derives from the recipe, and its logging window.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from ebmkit.checkpoint import save_checkpoint
from ebmkit.errors import TrainingDiverged
from ebmkit.protocols import ReferenceSet, SampleResult, TrainBatch, needs_of
from ebmkit.recipe import Recipe
from ebmkit.run import Run, setup


@attrs.define
class RunResult:
    out_dir: Path
    metrics: dict[str, float]


class Trainer:
    """Runs the loop's phases on a :class:`ebmkit.run.Run`."""

    def __init__(self, run: Run):
        self.run = run
        needs = [needs_of(placed.component) for placed in run.components.losses]
        self.wants_negatives = any(n.negatives for n in needs)
        self.graph_steps = max((n.graph_steps for n in needs), default=0)
        buffer = run.components.buffer
        self.reference_set = buffer if isinstance(buffer, ReferenceSet) else None
        self._window_start, self._window_steps = time.perf_counter(), 0

    def fit(self) -> RunResult:
        run, settings = self.run, self.run.recipe.train
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            run.hook.ebmkit_run_start(run=run)
            if settings.eval_at_start:
                self.evaluate("start")
            self._window_start = time.perf_counter()
            while run.state.step < settings.steps and not self.after_update(self.update()):
                pass
            self.checkpoint()
            self.evaluate("end")
            state = run.state
            run.log(state.step, {"wall_s": time.perf_counter() - started, "train_s": state.train_seconds, "updates": state.step})
        except BaseException as exc:
            error = exc
            raise
        finally:
            run.hook.ebmkit_run_end(run=run, error=error)
        return RunResult(run.out_dir, dict(run.latest))

    # -- one update ---------------------------------------------------------------------------
    def update(self) -> dict[str, float]:
        """draw starts -> sample -> losses -> step -> after-step; returns the update's metrics."""
        run, state = self.run, self.run.state
        started = time.perf_counter()
        x_pos, cond = state.data.next_batch()
        x_pos = x_pos.to(run.device)
        cond = cond.to(run.device) if cond is not None else None
        batch = TrainBatch(run.model, x_pos, cond, reference_set=self.reference_set)
        result = self.sample(batch) if self.wants_negatives else None
        total, metrics = self.losses(batch)
        self.step(total, batch, metrics)
        self.after_step(result)
        if run.device.type == "cuda":  # count the queued GPU work in this update's time, not the next evaluation's
            torch.cuda.synchronize(run.device)
        state.step += 1
        state.train_seconds += time.perf_counter() - started
        metrics["train_s"] = state.train_seconds
        for key, values in ({} if result is None else result.trace).items():
            if values:
                metrics[f"sampler/{key}"] = values[-1]
        return metrics

    def sample(self, batch: TrainBatch) -> SampleResult:
        components = self.run.components
        n = batch.x_pos.shape[0]
        x0 = components.buffer.draw(n, batch.x_pos) if components.buffer is not None else components.noise(n)
        result = components.sampler.sample(self.run.model, x0, cond=batch.cond, keep_graph=self.graph_steps)
        batch.x_neg, batch.x_neg_graph = result.x, result.x_graph
        return result

    def losses(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=batch.x_pos.device)
        metrics: dict[str, float] = {}
        for placed in self.run.components.losses:
            out = placed.component(batch)
            total = total + placed.keys["weight"] * out.value
            metrics[f"loss/{placed.name}"] = float(out.value.detach())
            metrics.update(out.metrics)
        return total, metrics

    def step(self, total: torch.Tensor, batch: TrainBatch, metrics: dict[str, float]) -> None:
        """Backward, clip, check for divergence, optimizer step."""
        state, settings = self.run.state, self.run.recipe.train
        state.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if settings.grad_clip:
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(state.energy.parameters(), settings.grad_clip))
        metrics["loss"] = float(total.detach())
        metrics["e_pos"] = float(batch.e_pos_scales.detach().mean())  # averaged over scales, as the reference logs it
        if batch.x_neg is not None:
            metrics["e_neg"] = float(batch.e_neg_scales.detach().mean())
        self.check_divergence(metrics)
        state.optimizer.step()

    def check_divergence(self, metrics: dict[str, float]) -> None:
        step, bound = self.run.state.step + 1, self.run.recipe.train.energy_bound
        watched = {k: metrics[k] for k in ("loss", "e_pos", "e_neg") if k in metrics}
        if not all(map(math.isfinite, watched.values())):
            shown = ", ".join(f"{k} {v}" for k, v in watched.items())
            raise TrainingDiverged(
                f"training diverged at step {step}: {shown} are not all finite; lower the learning rate or the "
                "sampler's step size, or strengthen a regularising loss term"
            )
        if bound is not None and abs(watched["e_pos"]) > bound:
            raise TrainingDiverged(
                f"training diverged at step {step}: |mean E+| = {abs(watched['e_pos']):.3g} exceeds "
                f"[train].energy_bound = {bound}"
            )

    def after_step(self, result: SampleResult | None) -> None:
        """Update the EMA, and offer the finished samples to the buffer."""
        state, buffer = self.run.state, self.run.components.buffer
        if state.ema is not None:
            state.ema.update(state.energy)
        if buffer is not None and result is not None:
            buffer.push(result.x)

    # -- between updates ----------------------------------------------------------------------
    def after_update(self, metrics: dict[str, float]) -> bool:
        """step end -> log -> checkpoint -> evaluate; True when the run must stop early."""
        run, settings, step = self.run, self.run.recipe.train, self.run.state.step
        out_of_time = settings.time_limit_s is not None and run.state.train_seconds >= settings.time_limit_s
        run.hook.ebmkit_step_end(run=run, step=step, metrics=metrics)
        self._window_steps += 1
        if step % settings.log_every == 0 or step == settings.steps or out_of_time:
            now = time.perf_counter()
            metrics["steps_per_s"] = self._window_steps / max(now - self._window_start, 1e-9)
            self._window_start, self._window_steps = now, 0
            run.log(step, metrics)
        if out_of_time:
            run.console.print(f"\\[train].time_limit_s = {settings.time_limit_s} reached after {step} updates")
            return True
        if settings.checkpoint_every and step % settings.checkpoint_every == 0:
            self.checkpoint()
        if step != settings.steps:
            self.evaluate("step")
        return False

    def checkpoint(self) -> Path:
        folder = save_checkpoint(self.run)
        self.run.hook.ebmkit_checkpoint_save(run=self.run, folder=folder)
        return folder

    def evaluate(self, when: Literal["start", "step", "end"]) -> None:
        step = self.run.state.step
        for metrics in self.run.hook.ebmkit_evaluate(run=self.run, step=step, when=when):
            if metrics:
                self.run.log(step, metrics)


def train(recipe: Recipe, out_dir: Path, *, console: Any = None, live: bool | None = None, registries: Any = None) -> RunResult:
    """Build every component of ``recipe``, train, evaluate, and fill ``out_dir``.

    Nothing is written when a component fails to build. The thread count the run chose is
    put back afterwards.
    """
    threads = torch.get_num_threads()
    try:
        return Trainer(setup(recipe, out_dir, console=console, live=live, registries=registries)).fit()
    finally:
        torch.set_num_threads(threads)

