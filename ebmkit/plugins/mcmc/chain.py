from __future__ import annotations

from typing import Any

import attrs
import torch

from ebmkit import Key, Keyed, SampleResult, StepContext, checked, component


@attrs.frozen
class Scheduled:
    """A transition of the chain, run after every ``every``-th step."""

    transition: Any
    every: int = 1


def _schedule(items) -> tuple[Scheduled, ...]:
    """Transitions as a recipe gives them (with their ``every``), as Scheduled, or bare (every step)."""
    out = []
    for item in items:
        if isinstance(item, Keyed):
            item = Scheduled(item.component, **item.keys)
        out.append(item if isinstance(item, Scheduled) else Scheduled(item))
    return tuple(out)


def _step_means(values: list[torch.Tensor]) -> torch.Tensor:
    """The mean of each step's statistic, as a 1-D tensor: one stack and one mean for the whole
    chain when the steps' statistics share a shape, else a mean per step."""
    if all(v.shape == values[0].shape for v in values):
        return torch.stack(values).float().reshape(len(values), -1).mean(1)
    return torch.stack([v.float().mean() for v in values])


def _at_least_one(instance, attribute, value):
    if not value:
        raise ValueError("the chain sampler needs at least one transition ([[sampler.transitions]] in a recipe)")


@attrs.frozen(kw_only=True)
class Chain:
    """Runs `steps` steps of its transitions; a transition with every = N runs after each N-th step."""

    steps: int = attrs.field(validator=attrs.validators.ge(1))
    transitions: tuple[Scheduled, ...] = component(
        "transitions", many=True, keys={"every": Key(int, 1, minimum=1, doc="run after every N-th step")},
        converter=_schedule, validator=_at_least_one,
    )

    @property
    def max_graph_steps(self) -> int:
        differentiable = all(getattr(s.transition, "differentiable", True) for s in self.transitions)
        return self.steps if differentiable else 0

    def _step(self, energy, x, i: int, cond, create_graph: bool, stats: dict[str, list[torch.Tensor]]):
        ctx = StepContext(index=i, total=self.steps, cond=cond, create_graph=create_graph)
        for scheduled in self.transitions:
            if scheduled.every == 1 or (i + 1) % scheduled.every == 0:
                result = checked.step(scheduled.transition, energy, x, ctx)
                x = result.x.detach() if result.x.requires_grad and not create_graph else result.x
                for key, value in result.stats.items():
                    stats.setdefault(key, []).append(value.detach())
        return x

    def sample(self, energy, x0: torch.Tensor, *, cond=None, keep_graph: int = 0) -> SampleResult:
        stats: dict[str, list[torch.Tensor]] = {}
        keep = min(int(keep_graph), self.steps)
        first_kept = self.steps - keep
        x = x0.detach() if x0.requires_grad else x0
        for i in range(self.steps):
            # The last `keep` steps keep their graph, from a detached start: computed once, they
            # give both the samples and the graph the KL term differentiates through.
            x = self._step(energy, x.detach() if i == first_kept else x, i, cond, i >= first_kept, stats)
        # per-step means stay on the device: reading them is the logger's business, not the hot loop's
        return SampleResult(x.detach() if keep else x, {key: _step_means(values) for key, values in stats.items()}, x if keep else None)
