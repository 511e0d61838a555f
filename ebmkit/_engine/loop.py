"""The training loop.

::

    setup (ebmkit._engine.run.setup: build, threads, folder, state, ebmkit_wrap_energy)
    resume (ebmkit._engine.run.resume_run): restore the latest checkpoint (ebmkit_checkpoint_load)
    ebmkit_run_start
    evaluate "start" (not when resuming)
    repeat until [train].steps updates (or [train].time_limit_s of training):
        update: draw starts -> sample -> losses and backward -> step -> after-step
        ebmkit_step_end -> log (every log_every) -> evaluate "step" -> checkpoint (every checkpoint_every)
        on SIGINT / SIGTERM: checkpoint, then stop (RunInterrupted)
    evaluate "end" -> checkpoint
    ebmkit_run_end (also when the run fails)

A divergence (a non-finite loss, energy, gradient or weight, or ``[train].energy_bound``
exceeded) anywhere in the loop goes to ``[train.on_divergence]``: stop, or roll back to the
latest checkpoint with a smaller learning rate and go on.

Every piece of changing state lives in ``run.state`` (:class:`ebmkit._engine.state.RunState`); the
loop itself holds only what it derives from the recipe, and its logging window. Everything
of a step is logged before that step's checkpoint is written, so a run resumed from it
misses nothing and repeats nothing.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from ebmkit._host import checked
from ebmkit._engine.checkpoint import check_finite_weights, list_checkpoints, prune_checkpoints, restore_checkpoint, save_checkpoint
from ebmkit._engine.distributed import any_rank, any_ranks, average_gradients, first_line, mean_over_ranks, say_last_words, world_from_env
from ebmkit._host.errors import EbmkitError, RankLost, RunInterrupted, TrainingDiverged
from ebmkit._host.protocols import ReferenceSet, SampleResult, TrainBatch, diagnostics, needs_of
from ebmkit._recipes.recipe import Recipe
from ebmkit._engine.init_from import start_from
from ebmkit._engine.run import Run, continues, rank_seed, read_metrics, resume_run, setup
from ebmkit._engine.speed import channels_last_if


def clear_gradients(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)``; for an optimizer that keeps torch's
    ``zero_grad``, the same loop without its profiler record, which costs ~15 µs an update."""
    if type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad:
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = None


@attrs.define
class RunResult:
    out_dir: Path
    metrics: dict[str, float]


class Trainer:
    """Runs the loop's phases on a :class:`ebmkit.Run`."""

    def __init__(self, run: Run):
        self.run = run
        needs = [needs_of(placed.component) for placed in run.components.losses]
        #: the loss terms in the order they are backpropagated: those that differentiate through
        #: the sampler's graph, then the others (Trainer.losses)
        self.loss_groups = tuple(
            [placed for placed, n in zip(run.components.losses, needs, strict=True) if bool(n.graph_steps) == through]
            for through in (True, False)
        )
        self.wants_negatives = any(n.negatives for n in needs)
        self.graph_steps = max((n.graph_steps for n in needs), default=0)
        #: whether negatives are sampled given the batch's labels (build checks that the terms agree)
        self.conditional_negatives = all(n.conditional for n in needs if n.negatives)
        buffer = run.components.buffer
        self.reference_set = buffer if isinstance(buffer, ReferenceSet) else None
        #: whether the samples enter the buffer before the losses (the reference's order) or after the step
        self.push_first = run.recipe.train.push_negatives == "before_losses"
        #: the energy's parameters (a rollback loads weights into these same tensors)
        self.parameters = list(run.state.energy.parameters())
        self._window_start, self._window_steps = time.perf_counter(), 0
        #: When the latest checkpoint was written (or the run started): [train].checkpoint_every_minutes counts from it.
        self._last_checkpoint = time.monotonic()
        #: The signal that asked the run to stop, once one came.
        self.interrupted: int | None = None

    def fit(self) -> RunResult:
        run, settings = self.run, self.run.recipe.train
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            with self._interruptible():
                run.hook.ebmkit_run_start(run=run)
                if settings.eval_at_start and not run.resumed:
                    self.evaluate("start")
                if settings.on_divergence.action == "rollback" and not list_checkpoints(run.out_dir):
                    self.checkpoint()  # a state to roll back to
                self._window_start = time.perf_counter()
                while True:
                    try:
                        self.train_to_end()
                        break
                    except TrainingDiverged as exc:
                        self.diverged(exc)
            state = run.state
            run.log(state.step, {"wall_s": time.perf_counter() - started, "train_s": state.train_seconds, "updates": state.step})
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                run.hook.ebmkit_run_end(run=run, error=error)
            finally:
                run.unregister_plugins()
        return RunResult(run.out_dir, dict(run.latest))

    def train_to_end(self) -> None:
        """Updates until the last one (or the time limit, or a signal), then the final evaluation and checkpoint."""
        run = self.run
        while run.state.step < run.recipe.train.steps:
            stop = self.after_update(self.update())
            interrupted = any_rank(self.interrupted is not None, run.world, run.device)  # a signal stops every rank
            if interrupted and self.interrupted is None:
                self.interrupted = signal.SIGTERM
            if interrupted and run.state.step < run.recipe.train.steps:
                self.interrupt()  # (after the last update the run simply finishes)
            if stop:
                break
        check_finite_weights(run.state)  # before the end evaluation draws from the weights
        self.evaluate("end")
        self.checkpoint()

    # -- one update ---------------------------------------------------------------------------
    def update(self) -> dict[str, float]:
        """draw starts -> sample -> push to the buffer -> losses and backward -> step -> after-step (the EMA); returns the update's metrics."""
        run, state = self.run, self.run.state
        started = time.perf_counter()
        x_pos, cond = state.data.next_batch()
        x_pos = channels_last_if(x_pos if x_pos.device == run.device else x_pos.to(run.device), run.recipe.run.channels_last)
        cond = cond.to(run.device) if cond is not None else None
        batch = TrainBatch(run.model, x_pos, cond, reference_set=self.reference_set)
        diagnosed = self.diagnosed(state.step + 1)
        with diagnostics(diagnosed):
            result = self.sample(batch) if self.wants_negatives else None
        if self.push_first:
            self.push(result)
        total, metrics = self.losses(batch)
        self.step(total, batch, metrics, diagnosed)
        self.after_step(None if self.push_first else result)
        # No host synchronisation here but the divergence flag: the metrics stay on the device
        # until an update is logged, so the device is not stalled between updates.
        state.step += 1
        state.train_seconds += time.perf_counter() - started
        metrics["train_s"] = state.train_seconds
        for key, values in ({} if result is None else result.trace).items():
            if len(values):
                metrics[f"sampler/{key}"] = values[-1]
        return metrics

    def diagnosed(self, step: int) -> bool:
        """Whether update ``step`` computes the sampler's per-step statistics: when it is logged,
        on every update when a plugin reads each update's metrics (an ``ebmkit_step_end`` that
        takes ``metrics``; the progress bar takes only ``step``), and when a time limit may log
        any update."""
        settings = self.run.recipe.train
        return (step % settings.log_every == 0 or step == settings.steps or settings.time_limit_s is not None
                or any("metrics" in impl.argnames for impl in self.run.hook.ebmkit_step_end.get_hookimpls()))

    def sample(self, batch: TrainBatch) -> SampleResult:
        components = self.run.components
        n = batch.x_pos.shape[0]
        x0 = checked.draw(components.buffer, n, batch.x_pos) if components.buffer is not None else components.noise(n)
        x0 = channels_last_if(x0, self.run.recipe.run.channels_last)
        cond = batch.cond if self.conditional_negatives else None
        result = checked.sample(components.sampler, self.run.model, x0, cond=cond, keep_graph=self.graph_steps)
        batch.x_neg, batch.x_neg_graph, batch.conditional_negatives = result.x, result.x_graph, self.conditional_negatives
        return result

    def losses(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        """The weighted loss terms, summed and backpropagated into the parameters' gradients.

        The terms that differentiate through the sampler's graph go first, and their backward
        frees that graph before the other terms build theirs: peak memory is the larger of the
        two parts, not their sum. Energies such a term computed (``batch.e_pos``, ...) are
        computed again for the others, and ``batch.x_neg_graph`` is None for them.

        :return: the total (detached) and the metrics (floats and 0-d tensors, read when logged).
        """
        clear_gradients(self.run.state.optimizer)
        through_sampler = self.loss_groups[0]
        total: torch.Tensor | None = None
        metrics: dict[str, Any] = {}
        trained = False
        for group in self.loss_groups:
            part = None
            for placed in group:
                out = checked.loss(placed.component, batch)
                weight = placed.keys["weight"]
                term = out.value if weight == 1 else weight * out.value  # (x·1 is exact: one op less)
                part = term if part is None else part + term
                metrics[f"loss/{placed.name}"] = out.value.detach()
                metrics.update(out.metrics)
            if part is not None and part.requires_grad:
                part.backward()
                trained = True
            if part is not None:
                total = part.detach() if total is None else total + part.detach()
            if group is through_sampler:
                batch.release_graph()
        if not trained or total is None:
            names = ", ".join(p.name for p in self.run.components.losses)
            raise EbmkitError(f"no loss term of this recipe ({names}) depends on the energy's parameters: there is nothing to train")
        return total, metrics

    def step(self, total: torch.Tensor, batch: TrainBatch, metrics: dict[str, Any], diagnosed: bool = True) -> None:
        """Average the gradients over ranks, clip, check for divergence, optimizer step.

        :param diagnosed: whether this update's metrics are read (Trainer.diagnosed); the total
            gradient norm is logged only then (the divergence check reads each parameter's).
        """
        state, settings = self.run.state, self.run.recipe.train
        average_gradients(self.parameters, self.run.world)  # before clipping, as the reference does
        with torch.no_grad():  # the mean energies, averaged over scales as the reference logs them
            # (computed afresh only when no term of the second backward pass used them)
            watched = {"loss": total, "e_pos": batch.e_pos_mean.detach()}
            if batch.x_neg is not None:
                watched["e_neg"] = batch.e_neg_mean.detach()
        if settings.grad_clip:
            norms = [torch.nn.utils.clip_grad_norm_(self.parameters, settings.grad_clip)]
        else:  # (the loss, the detached means and the gradients carry no graph: no torch.no_grad needed below)
            norms = torch._foreach_norm([p.grad for p in self.parameters if p.grad is not None])
        # one stack of everything the divergence check watches: one read of the device
        values = torch.stack([*watched.values(), *norms])
        metrics.update(watched)
        if diagnosed or settings.grad_clip:
            metrics["grad_norm"] = norms[0] if settings.grad_clip else torch.linalg.vector_norm(values[len(watched):])
        self.check_divergence(values, list(watched))
        try:
            state.optimizer.step()
        except RuntimeError as exc:  # a learning rate so large that the update overflows its dtype
            if "without overflow" not in str(exc):
                raise
            step = state.step + 1
            raise TrainingDiverged(f"training diverged at step {step}: the optimizer's update overflowed ({first_line(exc)})", step) from None

    def check_divergence(self, values: torch.Tensor, names: list[str]) -> None:
        """Stop on a non-finite loss, energy or gradient, or on ``energy_bound``.

        :param values: the watched numbers stacked on the device, read here at once (the
            update's only host synchronisation): ``names``' values, then the gradient norms
            (one per parameter, or the clipped total).
        """
        step, bound = self.run.state.step + 1, self.run.recipe.train.energy_bound
        read = values.tolist()
        healthy = all(map(math.isfinite, read))
        if bound is not None:
            healthy = healthy and abs(read[names.index("e_pos")]) <= bound
        # every rank stops (or rolls back) together: one rank alone would leave the others waiting
        if not any_rank(not healthy, self.run.world, self.run.device):
            return
        watched = dict(zip(names, read[: len(names)], strict=True))
        watched["grad_norm"] = math.sqrt(sum(v * v for v in read[len(names):]))
        if not all(map(math.isfinite, watched.values())):
            shown = ", ".join(f"{k} {v}" for k, v in watched.items())
            raise TrainingDiverged(f"training diverged at step {step}: {shown} are not all finite", step)
        if bound is not None and abs(watched["e_pos"]) > bound:
            raise TrainingDiverged(
                f"training diverged at step {step}: |mean E+| = {abs(watched['e_pos']):.3g} exceeds "
                f"[train].energy_bound = {bound}", step,
            )
        raise TrainingDiverged(f"training diverged at step {step} on another rank", step)

    def push(self, result: SampleResult | None) -> None:
        """Offer the update's finished samples to the buffer (when ``[train].push_negatives`` says)."""
        buffer = self.run.components.buffer
        if buffer is not None and result is not None:
            checked.push(buffer, result.x)

    def after_step(self, result: SampleResult | None) -> None:
        """Update the EMA, and offer the samples to the buffer if they were not offered before the losses."""
        state = self.run.state
        if state.ema is not None:
            state.ema.update(state.energy)
        self.push(result)

    # -- between updates ----------------------------------------------------------------------
    def after_update(self, metrics: dict[str, Any]) -> bool:
        """step end -> log -> evaluate -> checkpoint; True when the run must stop early."""
        run, settings, step = self.run, self.run.recipe.train, self.run.state.step
        out_of_time = settings.time_limit_s is not None and run.state.train_seconds >= settings.time_limit_s
        minutes = settings.checkpoint_every_minutes
        checkpoint_due = minutes is not None and time.monotonic() - self._last_checkpoint >= 60 * minutes
        # the ranks stop, and save, together
        out_of_time, checkpoint_due = any_ranks([out_of_time, checkpoint_due], run.world, run.device)
        if run.hook.ebmkit_step_end.get_hookimpls():  # (pluggy's call costs ~15 µs with no implementation)
            run.hook.ebmkit_step_end(run=run, step=step, metrics=metrics)
        self._window_steps += 1
        if step % settings.log_every == 0 or step == settings.steps or out_of_time:
            metrics = read_metrics(metrics)  # the window's one read of the device (it waits for its work)
            now = time.perf_counter()
            metrics["steps_per_s"] = self._window_steps / max(now - self._window_start, 1e-9)
            self._window_start, self._window_steps = now, 0
            run.log(step, mean_over_ranks(metrics, run.world, run.device))
        if out_of_time:
            run.console.print(f"\\[train].time_limit_s = {settings.time_limit_s} reached after {step} updates")
            return True
        if step != settings.steps:  # the last update is evaluated and saved by train_to_end
            self.evaluate("step")
            if settings.checkpoint_every and step % settings.checkpoint_every == 0:
                self.checkpoint()
            elif checkpoint_due:
                self.checkpoint(replaceable=True)
        return False

    def checkpoint(self, replaceable: bool = False) -> Path:
        """Write the run state (atomically; not again if this state is saved already); prune old ones.

        :param replaceable: a checkpoint written because ``[train].checkpoint_every_minutes``
            passed: the next checkpoint replaces it.
        """
        run = self.run
        folder = save_checkpoint(run, before_rename=lambda tmp: run.hook.ebmkit_checkpoint_save(run=run, folder=tmp),
                                 replaceable=replaceable)
        if run.world.is_main:
            prune_checkpoints(run.out_dir, run.recipe.train.keep_checkpoints)
        self._last_checkpoint = time.monotonic()
        return folder

    def evaluate(self, when: Literal["start", "step", "end"]) -> None:
        step = self.run.state.step
        for metrics in self.run.hook.ebmkit_evaluate(run=self.run, step=step, when=when):
            if metrics:
                self.run.log(step, metrics)

    # -- when things go wrong -----------------------------------------------------------------
    def diverged(self, exc: TrainingDiverged) -> None:
        """Apply ``[train.on_divergence]``: roll back to the latest checkpoint, or stop."""
        run, state, policy = self.run, self.run.state, self.run.recipe.train.on_divergence
        if policy.action == "stop" or state.retries >= policy.max_retries:
            if policy.action == "stop":
                what = "[train.on_divergence] action = \"stop\""
            else:
                what = f"it had already rolled back {state.retries} time(s), [train.on_divergence].max_retries = {policy.max_retries}"
            message = (
                f"{exc}; the run stopped ({what}). Lower [optim].lr or the sampler's step size, set "
                "[train].grad_clip, or weight a regularising loss term (energy_l2) more"
            )
            if policy.action == "stop":
                message += "; or set [train.on_divergence] action = \"rollback\" to restore the latest checkpoint and go on"
            run.event(state.step, {"event": "diverged", "message": str(exc), "action": "stop"})
            raise TrainingDiverged(message) from None
        diverged_at, retries = exc.step if exc.step is not None else state.step + 1, state.retries + 1
        latest = list_checkpoints(run.out_dir)[-1]
        restore_checkpoint(run, latest)
        run.hook.ebmkit_checkpoint_load(run=run, folder=latest)
        state.retries = retries
        for group in state.optimizer.param_groups:
            group["lr"] *= policy.lr_scale
        if policy.reseed:  # each rank its own new stream
            torch.manual_seed(rank_seed(run.recipe.run.seed, run.world.rank, retries))
        lrs = [group["lr"] for group in state.optimizer.param_groups]
        run.event(state.step, {
            "event": "rollback", "retry": retries, "diverged_at": diverged_at, "reason": str(exc), "lr": lrs,
            "message": f"{exc}; rolled back to step {state.step} ({latest.name}), learning rate now "
                       f"{', '.join(f'{lr:.3g}' for lr in lrs)}, rollback {retries} of {policy.max_retries}",
        })
        self._window_start, self._window_steps = time.perf_counter(), 0
        self.checkpoint()  # the rollback itself survives a kill

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """SIGINT and SIGTERM ask the run to stop after the current update, with a checkpoint;
        a second one acts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        # getsignal is None for a handler installed outside Python: give the default back then.
        previous = {sig: signal.getsignal(sig) or signal.SIG_DFL for sig in signals}

        def request_stop(signum: int, frame: Any) -> None:
            self.interrupted = signum
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.run.console.print(f"\n{signal.Signals(signum).name}: stopping after this update, with a checkpoint (again to stop at once)")

        for sig in signals:
            signal.signal(sig, request_stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def interrupt(self) -> None:
        run, name = self.run, signal.Signals(self.interrupted).name
        folder = self.checkpoint()
        nproc = f"--nproc {run.world.size} " if run.world.distributed else ""
        command = f"ebmkit run {nproc}--resume {shlex.quote(str(run.out_dir))}"
        message = f"{name} at step {run.state.step}; checkpoint written to {folder}"
        run.event(run.state.step, {"event": "interrupted", "signal": name, "message": message, "resume": command})
        raise RunInterrupted(f"interrupted: {message}; resume with: {command}", folder, command)


def train(
    recipe: Recipe, out_dir: Path, *, console: Any = None, live: bool | None = None, registries: Any = None,
    resume: bool | Literal["auto"] = False, world: Any = None,
) -> RunResult:
    """Build every component of ``recipe``, train, evaluate, and fill ``out_dir``.

    Nothing is written when a component fails to build. The thread count the run chose is
    put back afterwards.

    :param resume: continue the run in ``out_dir`` from its latest checkpoint (from step 0
        when it has none yet); ``recipe`` is normally that folder's ``recipe.toml``. ``"auto"``:
        continue the run in ``out_dir`` when there is one (``recipe`` must be the one it ran,
        up to what a resume may change), else start it: a re-launched job goes on.
    :param world: this process's place in a data-parallel run (read from torchrun's
        environment when not given).
    :raises RunInterrupted: on SIGINT or SIGTERM, after writing a checkpoint.
    :raises RankLost: another rank of a data-parallel run died, raised or stopped answering.
    """
    threads, run = torch.get_num_threads(), None
    world = world or world_from_env()
    if resume == "auto":
        resume = continues(recipe, out_dir)
    try:
        run = setup(recipe, out_dir, console=console, live=live, registries=registries, resume=resume, world=world)
        if resume and resume_run(run):
            return RunResult(out_dir, {})
        if recipe.train.init_from is not None and not run.resumed:
            start_from(run)
        return Trainer(run).fit()
    except (Exception, KeyboardInterrupt) as exc:
        if world.distributed and not isinstance(exc, RankLost | RunInterrupted):
            say_last_words(world, f"raised {type(exc).__name__}: {first_line(exc)}")  # the others name it
        raise
    finally:
        torch.set_num_threads(threads)
        if run is not None and run.lock is not None:
            run.lock.close()
