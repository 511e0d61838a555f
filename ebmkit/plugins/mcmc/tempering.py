from __future__ import annotations

import math

import attrs
import torch

from ebmkit import ComponentSpec, EbmkitError, Energy, Key, Keyed, SampleResult, StepContext, checked, component
from ebmkit.plugins.mcmc.chain import Scheduled, _schedule


class TemperedEnergy(Energy):
    """E(x_i)/T_i: each sample's energy divided by the temperature of the replica it belongs to.

    ``temperatures`` has one entry per sample of the batch (shape ``(N,)``), so that one
    forward pass serves every replica of a parallel-tempering run. It does not forward the
    inner energy's attributes: a transition that reads them instead of calling the energy
    (block Gibbs reads an RBM's conditionals) would ignore the temperature, so it fails here.
    """

    def __init__(self, inner: torch.nn.Module, temperatures: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.temperatures = temperatures

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[0] != self.temperatures.shape[0]:
            raise EbmkitError(
                f"the tempered energy holds {self.temperatures.shape[0]} temperatures (one per replica chain) "
                f"but was called on {x.shape[0]} samples; a transition must step the whole batch"
            )
        e = self.inner(x, cond)
        return e / self.temperatures.to(e.dtype)

    @property
    def expression(self) -> str:
        inner = self.inner.expression if isinstance(self.inner, Energy) else f"<{type(self.inner).__name__}>"
        return f"({inner}) / T"


def _ladder(instance, attribute, value):
    if value is None:
        return
    if len(value) < 1:
        raise ValueError("temperatures must hold at least one temperature, 1.0 first")
    if value[0] != 1.0:
        raise ValueError(f"temperatures must start at 1.0 (the replicas returned sample E itself), got {value[0]}")
    if any(not math.isfinite(t) for t in value):
        raise ValueError(f"temperatures must be finite, got {list(value)}")
    if any(b <= a for a, b in zip(value, value[1:], strict=False)):
        raise ValueError(f"temperatures must increase strictly, 1 = T_1 < T_2 < ..., got {list(value)}")


def _one_ladder(instance, attribute, value):
    given = instance.temperatures is not None
    geometric = instance.num_temperatures is not None or instance.max_temperature is not None
    if given and geometric:
        raise ValueError("give either temperatures, or num_temperatures and max_temperature, not both")
    if not given and not geometric:
        raise ValueError("give the ladder: temperatures = [1.0, ...], or num_temperatures and max_temperature (geometric)")
    if geometric and instance.num_temperatures is None:
        raise ValueError("max_temperature needs num_temperatures (the number of rungs of the geometric ladder)")
    if geometric and instance.num_temperatures > 1:
        if instance.max_temperature is None:
            raise ValueError("num_temperatures > 1 needs max_temperature (the hottest rung of the geometric ladder)")
        if not instance.max_temperature > 1:
            raise ValueError(f"max_temperature must be above 1 (the coldest rung), got {instance.max_temperature}")


def _temperature_of(item) -> tuple[str, float]:
    """A transition's name and own temperature, built or (when a recipe is checked) as its spec."""
    if isinstance(item, Scheduled | Keyed):
        item = item.transition if isinstance(item, Scheduled) else item.component
    if isinstance(item, ComponentSpec):
        return item.entry.name, item.values.get("temperature", 1.0)
    return type(item).__name__, getattr(item, "temperature", 1.0)


def _transitions_untempered(instance, attribute, value):
    if not value:
        raise ValueError("parallel tempering needs at least one transition ([[sampler.transitions]] in a recipe)")
    for item in value:
        name, temperature = _temperature_of(item)
        if temperature != 1.0:
            raise ValueError(
                f"transition {name} has temperature = {temperature}; the ladder does the tempering "
                "(each replica steps E/T_k), so leave the transition's own temperature at 1"
            )


@attrs.frozen(kw_only=True)
class ParallelTempering:
    """Parallel tempering (replica exchange): K replicas of each chain on E/T_k, swapping states between temperatures.

    Algorithm (Swendsen & Wang 1986; Geyer 1991; Earl & Deem 2005, "Parallel tempering:
    theory, applications, and new perspectives"). The ladder is 1 = T_1 < T_2 < ... < T_K:
    ``temperatures``, or ``num_temperatures`` rungs spaced geometrically up to
    ``max_temperature``, T_k = T_max^((k−1)/(K−1)). For B chains:

    1. The K·B replicas start from K copies of x0: replica k of chain b starts at x0[b]
       at every temperature. ``cond`` is repeated likewise, so each replica is conditioned
       as its chain is.
    2. ``steps`` times: every transition (``every`` as in the ``chain`` sampler) steps all
       K·B replicas as one batch on the tempered energy E(x)/T_k, a per-sample division,
       so one forward and one backward serve all replicas.
    3. After every ``swap_every``-th step, adjacent pairs (k, k+1) are proposed to exchange
       states: pairs with k even and k odd alternate between swap rounds ("deterministic
       even-odd" swaps, Okabe et al. 2001; Syed et al. 2022), all pairs of one round and all
       chains at once. A swap is accepted, per chain, with probability
       min(1, exp((1/T_k − 1/T_{k+1}) (E(x_k) − E(x_{k+1})))), E the untempered energy,
       computed afresh at the current states (one forward pass, no gradient, per round).
       Decisions draw from torch's global generator, so a seed fixes them.
    4. The T_1 = 1 replicas are returned.

    Which transitions sample the tempered law E/T_k exactly: MALA and HMC (Metropolis-
    corrected, at their default temperature 1, which here means the tempered energy); the
    ``langevin`` transition with ``noise_std`` unset (noise √(2η), exact at temperature 1
    for E/T_k up to its O(η) discretisation bias). A ``langevin`` transition with an
    independent ``noise_std`` (the image-EBM practice) does not sample E/T_k: its replicas
    do not follow the laws the swap rule assumes, and the T = 1 replicas are then not
    samples of exp(−E) either. A transition's own ``temperature`` must stay 1; the ladder
    does the tempering. With one temperature the sampler is the ``chain`` sampler.

    Step sizes act on E/T_k: a Langevin step of size η on E/T is Langevin at temperature T
    with step η/T, so hot replicas move by diffusion (√(2η) per step) more than by drift.

    It keeps no graph (``max_graph_steps = 0``): swaps are discrete moves and the hot replicas
    are not what a loss differentiates through. It is a sampler for evaluation and for
    persistent training (with a replay or persistent buffer, the T = 1 chains persist; the hot
    replicas restart from copies of x0 at every call), not for improved CD's KL term.

    Trace (1-D tensors on the device): the transitions' statistics averaged over the T = 1
    replicas, per step (``energy``, ``accept``, ``grad_norm``: the ``chain`` sampler's
    keys); ``swap_rate`` per swap round, the acceptance over the pairs proposed in it; and
    ``swap_rate_{k}_{k+1}`` per round in which the pair was proposed (0-based replica index).
    """

    steps: int = attrs.field(validator=attrs.validators.ge(1))
    transitions: tuple[Scheduled, ...] = component(
        "transitions", many=True, keys={"every": Key(int, 1, minimum=1, doc="run after every N-th step")},
        converter=_schedule, validator=_transitions_untempered,
    )
    #: the ladder, 1.0 first and increasing; or give num_temperatures and max_temperature
    temperatures: tuple[float, ...] | None = attrs.field(default=None, validator=_ladder)
    #: the number of rungs K of a geometric ladder from 1 to max_temperature
    num_temperatures: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
    max_temperature: float | None = attrs.field(default=None, validator=_one_ladder)
    #: propose swaps after every N-th step
    swap_every: int = attrs.field(default=1, validator=attrs.validators.ge(1))

    #: swaps are discrete moves: no graph is kept (a sampler for evaluation and persistent training)
    max_graph_steps = 0

    def ladder(self) -> list[float]:
        """The temperatures T_1 = 1 < ... < T_K."""
        if self.temperatures is not None:
            return [float(t) for t in self.temperatures]
        k = self.num_temperatures
        if k == 1:
            return [1.0]
        return [self.max_temperature ** (i / (k - 1)) for i in range(k)]

    def _swap(self, energy, x: torch.Tensor, cond, inverse: torch.Tensor, lower: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One swap round between pairs (k, k+1), k in ``lower``; returns the states and each pair's acceptance rate."""
        k = inverse.shape[0]
        per_replica = x.reshape(k, -1, *x.shape[1:])
        with torch.no_grad():
            e = energy(x, cond).view(k, -1)
        upper = lower + 1
        log_alpha = (inverse[lower] - inverse[upper])[:, None] * (e[lower] - e[upper])
        accept = torch.rand(log_alpha.shape, dtype=log_alpha.dtype, device=log_alpha.device).log() < log_alpha
        mask = accept.view(*accept.shape, *([1] * (x.dim() - 1)))
        x_lower, x_upper = per_replica[lower], per_replica[upper]
        swapped = per_replica.clone()
        swapped[lower] = torch.where(mask, x_upper, x_lower)
        swapped[upper] = torch.where(mask, x_lower, x_upper)
        return swapped.reshape(x.shape), accept.float().mean(1)

    def sample(self, energy, x0: torch.Tensor, *, cond=None, keep_graph: int = 0) -> SampleResult:
        if keep_graph:
            raise EbmkitError(f"parallel_tempering keeps no graph (swaps are discrete moves), not the last {keep_graph} steps")
        ladder = self.ladder()
        k, b, device = len(ladder), x0.shape[0], x0.device
        x = torch.cat([x0.detach()] * k) if k > 1 else x0.detach()
        cond_all = torch.cat([cond] * k) if cond is not None and cond.dim() > 0 and k > 1 else cond
        dtype = x0.dtype if x0.dtype in (torch.float32, torch.float64) else torch.float32
        temps = torch.tensor(ladder, dtype=dtype, device=device)
        tempered = TemperedEnergy(energy, temps.repeat_interleave(b))
        inverse = 1.0 / temps
        # even pairs, then odd pairs; with two rungs there are no odd pairs and (0, 1) is proposed every round
        pair_sets = [lowers for lowers in (list(range(0, k - 1, 2)), list(range(1, k - 1, 2))) if lowers]
        pair_tensors = [torch.tensor(lowers, device=device) for lowers in pair_sets]

        stats: dict[str, list[torch.Tensor]] = {}
        rounds: list[tuple[int, torch.Tensor]] = []  # (which pair set, acceptance rate of each of its pairs)
        for i in range(self.steps):
            ctx = StepContext(index=i, total=self.steps, cond=cond_all, create_graph=False)
            for scheduled in self.transitions:
                if scheduled.every == 1 or (i + 1) % scheduled.every == 0:
                    result = checked.step(scheduled.transition, tempered, x, ctx)
                    x = result.x.detach()
                    for key, value in result.stats.items():
                        stats.setdefault(key, []).append((value[:b] if value.dim() else value).float().mean())
            if pair_sets and (i + 1) % self.swap_every == 0:
                which = len(rounds) % len(pair_sets)
                x, rates = self._swap(energy, x, cond_all, inverse, pair_tensors[which])
                rounds.append((which, rates))

        # per-step means stay on the device: reading them is the logger's business, not the hot loop's
        trace = {key: torch.stack(values) for key, values in stats.items()}
        if pair_sets:
            trace["swap_rate"] = _stack([rates.mean() for _, rates in rounds], device)
            for which, lowers in enumerate(pair_sets):
                for j, lower in enumerate(lowers):
                    trace[f"swap_rate_{lower}_{lower + 1}"] = _stack([rates[j] for w, rates in rounds if w == which], device)
        # a copy when there are hot replicas, so that their storage is freed with the run
        return SampleResult(x[:b].clone() if k > 1 else x, trace)


def _stack(values: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    return torch.stack(values) if values else torch.zeros(0, device=device)
