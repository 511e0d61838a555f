from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

from ebmkit import INFINITE_OK, EbmkitError, SampleResult, energy_and_grad, low_below_high, normal_like
from ebmkit.plugins.energy_matching.schedule import TemperatureSchedule

Tensor = torch.Tensor


def _fraction(instance, attribute, value):
    if not 0 <= value <= 1:
        raise ValueError(f"given_starts must be a fraction in [0, 1] of the chains, got {value}")


def _at_least_one_step(instance, attribute, value):
    if round(value / instance.dt) < 1:
        raise ValueError(f"t_end = {value} is less than one step of dt = {instance.dt}")


@attrs.frozen(kw_only=True)
class EnergyMatchingSampler:
    """Energy Matching's generation: integrate dx = −∇V(x)dt + √(2ε(t))dW from t = 0 to ``t_end``.

    V = ``temperature``·E (ebmkit's energy E defines exp(−E)), and ε(t) is the
    :class:`TemperatureSchedule` of (``temperature``, ``tau_star``): the samples follow the
    learned transport without noise until τ*, and from t = 1 on they sample exp(−E) by
    Langevin dynamics. ``t_end`` is the paper's sampling time τ_s (3.25 for CIFAR-10), taken in
    round(t_end/dt) steps of ``dt``:

    - ``method = "heun"``: the stochastic Euler–Heun (Stratonovich) step the paper's FID and
      sampling scripts take (torchsde's ``heun``): a predictor y' = x + f(x)dt + g(t)ΔW, then
      x + ½(f(x) + f(y'))dt + ½(g(t) + g(t + dt))ΔW; two gradients a step.
    - ``method = "euler"``: the Euler–Maruyama step of the reference's training chains,
      x − dt·∇V(x) + √(2ε(t)dt)·ξ; one gradient a step.

    ``given_starts`` is the fraction of the chains (the first ⌊fraction·B⌋) that start at the
    given ``x0``; the others start at the transport's source N(0, I), whatever ``x0`` holds.
    The paper's training negatives start half at the data batch: ``given_starts = 0.5`` over
    the ``data`` buffer. ``clamp`` bounds the final samples once, as the reference does, not
    each step.
    """

    temperature: float = attrs.field(validator=attrs.validators.gt(0))
    tau_star: float = 1.0
    dt: float = attrs.field(default=0.01, validator=attrs.validators.gt(0))
    t_end: float = attrs.field(default=2.0, validator=[attrs.validators.gt(0), _at_least_one_step])
    method: Literal["heun", "euler"] = attrs.field(default="heun", validator=attrs.validators.in_(("heun", "euler")))
    given_starts: float = attrs.field(default=0.0, validator=_fraction)
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=low_below_high, metadata={INFINITE_OK: True})
    schedule: TemperatureSchedule = attrs.field(init=False)

    #: The chains keep no graph: the contrastive term treats the negatives as fixed samples.
    max_graph_steps = 0

    @schedule.default
    def _schedule(self) -> TemperatureSchedule:
        return TemperatureSchedule(epsilon_max=self.temperature, tau_star=self.tau_star)

    @property
    def steps(self) -> int:
        return round(self.t_end / self.dt)

    def starts(self, x0: Tensor) -> Tensor:
        """The chains' starts: the first ⌊given_starts·B⌋ of ``x0``, then N(0, I)."""
        given = int(self.given_starts * x0.shape[0])
        if given == x0.shape[0]:
            return x0.detach()
        fresh = normal_like(x0[given:])
        return torch.cat([x0[:given].detach(), fresh]) if given else fresh

    def drift(self, energy, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """E(x) and the drift −∇V(x) = −temperature·∇E(x)."""
        e, grad = energy_and_grad(energy, x, cond)
        return e, -self.temperature * grad

    def sample(self, energy, x0: Tensor, *, cond: Tensor | None = None, keep_graph: int = 0) -> SampleResult:
        if keep_graph:
            raise EbmkitError(f"the energy_matching sampler keeps no graph, not of {keep_graph} steps")
        x = self.starts(x0)
        step = self._heun if self.method == "heun" else self._euler
        # ε at every step's two ends, t_k = k·dt, once for the whole run
        epsilons = self.schedule(torch.arange(self.steps + 1, dtype=torch.float64) * self.dt).tolist()
        energies = []
        for k in range(self.steps):
            x, e = step(energy, x, cond, epsilons[k], epsilons[k + 1])
            energies.append(e.mean())
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return SampleResult(x.detach(), {"energy": torch.stack(energies), "temperature": epsilons[:-1]})

    def _euler(self, energy, x: Tensor, cond: Tensor | None, epsilon: float, epsilon_next: float) -> tuple[Tensor, Tensor]:
        # (ε at the step's start only: ``epsilon_next`` is Heun's)
        e, f = self.drift(energy, x, cond)
        x = x + self.dt * f
        if epsilon > 0:
            x = x + math.sqrt(2 * epsilon * self.dt) * normal_like(x)
        return x, e

    def _heun(self, energy, x: Tensor, cond: Tensor | None, epsilon: float, epsilon_next: float) -> tuple[Tensor, Tensor]:
        g0, g1 = math.sqrt(2 * epsilon), math.sqrt(2 * epsilon_next)
        dw = math.sqrt(self.dt) * normal_like(x) if g0 or g1 else None
        e, f0 = self.drift(energy, x, cond)
        predictor = x + self.dt * f0 + (g0 * dw if dw is not None else 0)
        _, f1 = self.drift(energy, predictor, cond)
        x = x + 0.5 * self.dt * (f0 + f1)
        if dw is not None:
            x = x + 0.5 * (g0 + g1) * dw
        return x, e
