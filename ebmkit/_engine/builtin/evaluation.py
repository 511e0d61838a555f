"""Runs the recipe's ``[[evaluators]]`` at the evaluation points of the loop."""

from __future__ import annotations

import torch

from ebmkit._host.hookimpl import hookimpl
from ebmkit._host import checked
from ebmkit._engine.builtin import progress


@hookimpl
def ebmkit_evaluate(run, step, when):
    """Every evaluator at the start and the end; at an update, those whose ``every`` divides it."""
    metrics: dict[str, float] = {}
    for placed in run.components.evaluators:
        every = placed.keys["every"]
        if when == "step" and not (every and step % every == 0):
            continue
        progress.show(run, f"evaluating {placed.name}")  # a long evaluation (a final grid, FID) is not silent
        metrics.update(run_evaluator(placed, run.eval_context(step)))
    return metrics or None


def run_evaluator(placed, ctx, seed: int | None = None) -> dict:
    """One placed evaluator on ``ctx``, its metrics named ``<evaluator>/<metric>``.

    The energy is in eval mode meanwhile. The evaluator draws from a forked random state
    (seeded with ``seed`` if given), so adding one does not change the training run.
    """
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    ctx.energy.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            found = checked.evaluate(placed.component, ctx)
    finally:
        ctx.energy.train()
    return {f"{placed.name}/{k}": v for k, v in (found or {}).items()}
