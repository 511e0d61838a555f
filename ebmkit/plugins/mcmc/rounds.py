from __future__ import annotations

from typing import Any

import attrs
import torch

from ebmkit import EbmkitError, SampleResult, StepContext, checked, component, count_models


def _required(instance, attribute, value):
    if value is None:
        raise ValueError(f"the rounds sampler needs a {attribute.name} ([sampler.{attribute.name}] in a recipe)")


@attrs.frozen(kw_only=True)
class AugmentedRounds:
    """Rounds of MCMC steps with an augmentation after each, then steps without: the
    Improved-CD reference's test-time sampler for compositions and generation.

    ``rounds`` times: ``steps_per_round`` steps of ``transition``, then ``augment`` (if set);
    then ``final_steps`` steps of ``transition``. With ``divide_step_size`` the transition's
    step size is divided by the number of models in the energy, as the reference does for a
    composition (step 500 / number of models): a sum of k models has k times the gradient.
    """

    transition: Any = component("transitions", validator=_required)
    augment: Any = component("transitions")
    rounds: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    steps_per_round: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    final_steps: int = attrs.field(default=80, validator=attrs.validators.ge(0))
    divide_step_size: bool = True

    max_graph_steps = 0  # a test-time sampler: no loss differentiates through it

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round + self.final_steps

    def _transition(self, energy) -> Any:
        models = count_models(energy)
        if not self.divide_step_size or models == 1:
            return self.transition
        if not hasattr(self.transition, "step_size"):
            raise EbmkitError(
                f"divide_step_size divides the transition's step_size by the number of models, but "
                f"{type(self.transition).__name__} has no step_size; set divide_step_size = false"
            )
        return attrs.evolve(self.transition, step_size=self.transition.step_size / models)

    @torch.no_grad()
    def sample(self, energy, x0: torch.Tensor, *, cond=None, keep_graph: int = 0) -> SampleResult:
        transition = self._transition(energy)
        x, energies, index = x0.detach(), [], 0
        for round_ in range(self.rounds + 1):
            steps = self.steps_per_round if round_ < self.rounds else self.final_steps
            for _ in range(steps):
                ctx = StepContext(index=index, total=self.total_steps, cond=cond, create_graph=False)
                result = checked.step(transition, energy, x, ctx)
                x, index = result.x.detach(), index + 1
                if "energy" in result.stats:
                    energies.append(result.stats["energy"].float().mean())  # read only when logged
            if round_ < self.rounds and self.augment is not None:
                x = checked.step(self.augment, energy, x, StepContext(index=index, total=self.total_steps, cond=cond)).x.detach()
        return SampleResult(x, {"energy": torch.stack(energies)} if energies else {})
