"""Runs the recipe's ``[[evaluators]]`` at the evaluation points of the loop."""

from __future__ import annotations

from ebmkit._host.hookimpl import hookimpl
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
        metrics.update(run_evaluator(placed.name, placed.component, run.eval_context(step)))
    return metrics or None


def run_evaluator(name: str, evaluator, ctx, seed: int | None = None) -> dict:
    """One evaluator on ``ctx``, its metrics named ``<name>/<metric>``: the one way ebmkit runs an
    evaluator (in training, ``ebmkit eval`` and ``ebmkit compose``).

    The energy is in eval mode meanwhile, then each of its modules back in the mode it was in
    (a composition of loaded models stays in eval mode). The evaluator draws
    from a forked random state (seeded with ``seed`` if given), so adding one does not change
    the training run.
    """
    import torch  # (here: loading the plugins, as listing commands does, imports no torch)

    from ebmkit._host import checked

    devices = [ctx.device] if ctx.device.type == "cuda" else []
    modes = [(module, module.training) for module in ctx.energy.modules()]
    ctx.energy.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            found = checked.evaluate(evaluator, ctx)
    finally:
        for module, training in modes:
            module.training = training
    return {f"{name}/{k}": v for k, v in (found or {}).items()}
