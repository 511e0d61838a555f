from __future__ import annotations

import math

import attrs
import torch

from ebmkit import INFINITE_OK, SampleResult, energy_and_grad, low_below_high, normal_like


def _at_most_t_max(instance, attribute, value):
    if value > instance.t_max:
        raise ValueError(f"t_min must be at most t_max (the schedule goes down from t_max to t_min), got t_min={value}, t_max={instance.t_max}")


@attrs.frozen(kw_only=True)
class AnnealedLangevin:
    """Langevin over a decreasing temperature schedule, from t_max down to t_min (geometric).

    At each of ``levels`` temperatures T it takes ``steps_per_level`` unadjusted Langevin
    steps x <- x − η∇E(x) + √(2ηT)ξ, which target exp(−E/T); the last level samples
    exp(−E/t_min). With ``cond_on_level`` the level index (0 = hottest) is passed to the
    energy as its condition, for noise-conditional (time-dependent) energies.
    """

    step_size: float = attrs.field(validator=attrs.validators.gt(0))
    levels: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    steps_per_level: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    t_max: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    t_min: float = attrs.field(default=1.0, validator=[attrs.validators.gt(0), _at_most_t_max])
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=low_below_high, metadata={INFINITE_OK: True})
    cond_on_level: bool = False

    #: It keeps the graph of its last step only.
    max_graph_steps = 1

    def temperatures(self) -> list[float]:
        if self.levels == 1:
            return [self.t_min]
        ratio = (self.t_min / self.t_max) ** (1 / (self.levels - 1))
        return [self.t_max * ratio**i for i in range(self.levels)]

    def _step(self, energy, x, temperature: float, cond, create_graph: bool):
        e, grad = energy_and_grad(energy, x, cond, create_graph=create_graph)
        x = x - self.step_size * grad + math.sqrt(2 * self.step_size * temperature) * normal_like(x)
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return x, e.detach(), grad.detach().flatten(1).norm(dim=1)

    def sample(self, energy, x0: torch.Tensor, *, cond=None, keep_graph: int = 0) -> SampleResult:
        if keep_graph > self.max_graph_steps:
            from ebmkit import EbmkitError

            raise EbmkitError(f"annealed_langevin keeps the graph of its last step only, not {keep_graph}")
        x = x0.detach()
        energies, grad_norms, temps = [], [], []
        schedule = [(level, t) for level, t in enumerate(self.temperatures()) for _ in range(self.steps_per_level)]
        for k, (level, temperature) in enumerate(schedule):
            level_cond = torch.full((len(x),), level, device=x.device) if self.cond_on_level else cond
            last = k == len(schedule) - 1
            # the last step keeps its graph when asked: computed once, it gives the samples and the graph
            x_next, e, g = self._step(energy, x, temperature, level_cond, bool(last and keep_graph))
            x_graph = x_next if last and keep_graph else None
            x = x_next.detach()
            energies.append(e.mean())
            grad_norms.append(g.mean())
            temps.append(temperature)
        trace = {"energy": torch.stack(energies), "grad_norm": torch.stack(grad_norms), "temperature": temps}
        return SampleResult(x, trace, x_graph)
