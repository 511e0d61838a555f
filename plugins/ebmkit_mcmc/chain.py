from __future__ import annotations

import attrs
import torch

from ebmkit.protocols import SampleResult, Scheduled, StepContext
from ebmkit_mcmc.rng import rng_state, set_rng_state


@attrs.frozen(kw_only=True)
class Chain:
    """Runs `steps` steps of the recipe's transitions; a transition with every=N runs after each N-th step."""

    steps: int = attrs.field(validator=attrs.validators.ge(1))
    transitions: tuple[Scheduled, ...] = attrs.field(converter=tuple, default=())

    def __attrs_post_init__(self) -> None:
        if not self.transitions:
            from ebmkit import EbmkitError

            raise EbmkitError("the chain sampler needs at least one transition ([[transitions]] in a recipe)")

    def _step(self, energy, x, i: int, cond, create_graph: bool, stats: dict[str, list[torch.Tensor]] | None):
        ctx = StepContext(index=i, total=self.steps, cond=cond, create_graph=create_graph)
        for scheduled in self.transitions:
            if scheduled.every == 1 or (i + 1) % scheduled.every == 0:
                result = scheduled.transition.step(energy, x, ctx)
                x = result.x if create_graph else result.x.detach()
                if stats is not None:
                    for key, value in result.stats.items():
                        stats.setdefault(key, []).append(value.float().mean())
        return x

    def sample(self, energy, x0: torch.Tensor, *, cond=None, keep_last_graph: bool | int = False) -> SampleResult:
        stats: dict[str, list[torch.Tensor]] = {}
        keep = min(int(keep_last_graph), self.steps)
        first_kept = self.steps - keep
        x = x0.detach()
        x_before, rng = x, rng_state(x.device)
        for i in range(self.steps):
            if i == first_kept:
                x_before, rng = x, rng_state(x.device)
            x = self._step(energy, x, i, cond, False, stats)
        x_graph = None
        if keep:
            # Redo the last `keep` steps with the same random numbers, keeping their graph.
            after = rng_state(x.device)
            set_rng_state(x.device, rng)
            x_graph = x_before
            for i in range(first_kept, self.steps):
                x_graph = self._step(energy, x_graph, i, cond, True, None)
            set_rng_state(x.device, after)
        trace = {key: torch.stack(values).tolist() for key, values in stats.items()}
        return SampleResult(x.detach(), trace, x_graph)

