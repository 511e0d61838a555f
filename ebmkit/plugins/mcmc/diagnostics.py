"""MCMC diagnostics: chains run step by step, and their effective sample size and R-hat.

The statistics come from ArviZ (``pip install ebmkit[diagnostics]``): bulk ESS and rank-normalised
split R-hat, per coordinate, of draws shaped ``(chain, draw, dim)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import numpy as np
import torch

from ebmkit import EbmkitError, EvalContext, StepContext, checked, component


@attrs.define
class ChainRecord:
    """What :func:`run_chains` saw.

    :ivar x: the state after every step, shape ``(steps, chains, *sample_shape)``, on the CPU.
    :ivar energy: E of every chain after every step, shape ``(steps, chains)``, when asked.
    :ivar grad_evals: how many energy gradients each chain took (batched forward passes with
        autograd on, counted while the transitions ran).
    :ivar accept: the mean ``accept`` statistic of the transitions that report one, else None.
    """

    x: torch.Tensor
    energy: torch.Tensor | None
    grad_evals: int
    accept: float | None


def _steps_of(sampler: Any) -> tuple[int, tuple]:
    """A sampler's number of steps and its scheduled transitions (the ``chain`` sampler's form)."""
    from ebmkit.plugins.mcmc.chain import Chain

    # Only the chain sampler runs its transitions as they are: another sampler with steps and
    # transitions (parallel tempering) would be recorded as an untempered chain.
    steps, transitions = getattr(sampler, "steps", None), getattr(sampler, "transitions", None)
    if not isinstance(sampler, Chain) or not isinstance(steps, int) or not transitions:
        raise EbmkitError(
            f"the {type(sampler).__name__} sampler does not expose its steps and transitions, so its chains cannot be "
            "recorded step by step; give the evaluator a chain sampler of its own, e.g. [evaluators.sampler] "
            "name = \"chain\" with [[evaluators.sampler.transitions]]"
        )
    return steps, tuple(transitions)


def run_chains(sampler: Any, energy, x0: torch.Tensor, *, cond=None, steps: int | None = None, record_energy: bool = False) -> ChainRecord:
    """Run a chain sampler's transitions one step at a time from ``x0``, recording every state.

    The schedule is the sampler's own (a transition with ``every = N`` runs after each N-th
    step), so the chains are those ``sampler.sample`` would run; ``steps`` overrides the
    sampler's number of steps.
    """
    total, transitions = _steps_of(sampler)
    total = total if steps is None else int(steps)
    calls = [0]

    def count(module, args):
        # Transitions take gradients with autograd on; energies recorded here are taken under no_grad.
        if torch.is_grad_enabled():
            calls[0] += 1

    handle = energy.register_forward_pre_hook(count) if isinstance(energy, torch.nn.Module) else None
    xs, es, accepts = [], [], []
    x = x0.detach()
    try:
        for i in range(total):
            ctx = StepContext(index=i, total=total, cond=cond)
            for scheduled in transitions:
                every = getattr(scheduled, "every", 1)
                if every == 1 or (i + 1) % every == 0:
                    result = checked.step(getattr(scheduled, "transition", scheduled), energy, x, ctx)
                    x = result.x.detach()
                    if "accept" in result.stats:
                        accepts.append(result.stats["accept"].float().mean())
            xs.append(x.cpu())
            if record_energy:
                with torch.no_grad():
                    es.append(energy(x, cond).detach().double().cpu())
    finally:
        if handle is not None:
            handle.remove()
    return ChainRecord(
        x=torch.stack(xs),
        energy=torch.stack(es) if record_energy else None,
        grad_evals=calls[0],
        accept=float(torch.stack(accepts).mean()) if accepts else None,
    )


def chain_cond(ctx: EvalContext, n: int) -> torch.Tensor | None:
    """Condition labels for ``n`` chains of a conditional model (the classes in turn), else None."""
    classes = getattr(ctx.dataset, "num_classes", None)
    return torch.arange(n, device=ctx.device) % classes if classes else None


def _arviz():
    try:
        with warnings.catch_warnings():  # ArviZ 0.2x announces its refactor on import
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError as exc:
        raise EbmkitError("MCMC diagnostics need ArviZ: pip install ebmkit[diagnostics]") from exc
    return arviz


def ess_rhat(draws: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Bulk ESS, tail ESS and R-hat per coordinate of ``draws``, shape ``(chain, draw, dim)``, by ArviZ.

    Tail ESS (of the 5 % and 95 % quantiles) is kept beside bulk ESS because a sampler can
    be antithetic (HMC on a Gaussian at some trajectory lengths): bulk ESS above the number
    of draws, while the spread is estimated no better than from independent draws.

    :return: ``{"ess": (dim,), "ess_tail": (dim,), "rhat": (dim,)}``.
    """
    draws = np.asarray(draws.detach().cpu().double() if isinstance(draws, torch.Tensor) else draws, dtype=np.float64)
    if draws.ndim != 3:
        raise EbmkitError(f"ess_rhat needs draws of shape (chain, draw, dim), got shape {draws.shape}")
    chains, n, _ = draws.shape
    if chains < 2 or n < 4:
        raise EbmkitError(f"ESS and R-hat need at least 2 chains of 4 draws each, got {chains} chains of {n} draws")
    az = _arviz()
    dataset = az.convert_to_dataset({"x": draws})
    ess = az.ess(dataset, method="bulk")["x"].values
    tail = az.ess(dataset, method="tail")["x"].values
    rhat = az.rhat(dataset)["x"].values
    return {"ess": np.atleast_1d(ess), "ess_tail": np.atleast_1d(tail), "rhat": np.atleast_1d(rhat)}


def summarize(record: ChainRecord, burn_in: int) -> dict[str, float]:
    """Min bulk and tail ESS, bulk ESS per 1000 gradient evaluations (of all chains together),
    and max R-hat of a record's draws after ``burn_in`` steps."""
    x = record.x[burn_in:]
    draws = x.flatten(2).transpose(0, 1)  # (steps, chains, dim) -> (chain, draw, dim)
    stats = ess_rhat(draws)
    ess_min = float(stats["ess"].min())
    out = {"ess_bulk_min": ess_min, "ess_tail_min": float(stats["ess_tail"].min()), "rhat_max": float(stats["rhat"].max())}
    kept_evals = record.grad_evals * x.shape[0] / record.x.shape[0] * draws.shape[0]
    if kept_evals > 0:
        out["ess_per_1000_grads"] = 1000 * ess_min / kept_evals
    if record.accept is not None:
        out["accept"] = record.accept
    return out


@attrs.frozen
class MCMCDiagnostics:
    """Bulk effective sample size and R-hat of several independent chains (needs ArviZ).

    Runs ``num_chains`` chains of ``steps`` steps from fresh starts with the sampler's own
    transitions (the run's sampler, or ``[evaluators.sampler]``; it must be a ``chain``
    sampler), drops the first ``burn_in`` steps, and reports per coordinate, through ArviZ:
    ``ess_bulk_min`` (the smallest bulk ESS), ``ess_tail_min`` (the smallest ESS of the 5 % and
    95 % quantiles), ``ess_per_1000_grads`` (that ESS per 1000
    energy gradients of all chains after burn-in), ``rhat_max`` (the largest R-hat; near 1
    when the chains agree, above 1.01–1.1 when they have not mixed) and ``accept`` for
    Metropolis-adjusted transitions. It writes nothing.
    """

    num_chains: int = attrs.field(default=4, validator=attrs.validators.ge(2))
    steps: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    burn_in: int = attrs.field(default=200, validator=attrs.validators.ge(0))
    #: a chain sampler of its own (``[evaluators.sampler]``); else the run's
    sampler: Any = component("samplers")

    @burn_in.validator
    def _burn_in_below_steps(self, attribute, value):
        if self.steps - value < 4:
            raise ValueError(f"burn_in = {value} leaves fewer than 4 of the {self.steps} steps to measure")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        _arviz()  # fail before sampling when ArviZ is missing
        sampler, n = self.sampler or ctx.sampler, self.num_chains
        record = run_chains(sampler, ctx.energy, ctx.noise(n), cond=chain_cond(ctx, n), steps=self.steps)
        return summarize(record, self.burn_in)
