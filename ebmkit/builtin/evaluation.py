"""Runs the recipe's ``[[evaluators]]`` at the evaluation points of the loop."""

from __future__ import annotations

import torch

from ebmkit import hookimpl
from ebmkit.builtin import progress


@hookimpl
def ebmkit_evaluate(run, step, when):
    """Every evaluator at the start and the end; at an update, those whose ``every`` divides it."""
    metrics: dict[str, float] = {}
    for placed in run.components.evaluators:
        every = placed.keys["every"]
        if when == "step" and not (every and step % every == 0):
            continue
        ctx = run.eval_context(step)
        ctx.energy.eval()
        # Evaluators draw from a forked random state, so adding one does not change the training run.
        devices = [run.device] if run.device.type == "cuda" else []
        progress.show(run, f"evaluating {placed.name}")  # a long evaluation (a final grid, FID) is not silent
        try:
            with torch.random.fork_rng(devices=devices):
                found = placed.component.evaluate(ctx)
        finally:
            ctx.energy.train()
        metrics.update({f"{placed.name}/{k}": v for k, v in (found or {}).items()})
    return metrics or None
