"""Parallel tempering: it crosses a barrier a single chain does not, its swap rule is the
replica-exchange one, it is the chain sampler with one temperature, and it keeps its contract."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

import ebmkit
from ebmkit import Energy, EbmkitError, RecipeError
from ebmkit._testkit.contract import Points, check_component
from ebmkit._host.protocols import StepResult
from ebmkit.plugins.mcmc.chain import Chain, Scheduled
from ebmkit.plugins.mcmc.langevin import Langevin
from ebmkit.plugins.mcmc.mala import MALA
from ebmkit.plugins.mcmc.tempering import ParallelTempering


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


class TwoModes(Energy):
    """−log(½N(x; −m, I) + ½N(x; m, I)) + const in 1-D: two modes at ±m, a barrier of about m²/2 at 0."""

    def __init__(self, m: float):
        super().__init__()
        self.m = m

    def forward(self, x, cond=None):
        near = (x - self.m).pow(2).sum(1) / 2
        far = (x + self.m).pow(2).sum(1) / 2
        return -torch.logsumexp(torch.stack([-near, -far]), 0)


class Linear(Energy):
    """E(x) = Σ x: energies are read off the states."""

    def forward(self, x, cond=None):
        return x.flatten(1).sum(1)


class ConditionalBowl(Energy):
    """E(x, c) = ½(x − μ_c)², one centre per class."""

    def __init__(self, centres):
        super().__init__()
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float64))

    def forward(self, x, cond=None):
        return 0.5 * (x[:, 0] - self.centres[cond]).pow(2)


class ToEnergy:
    """A test transition that moves each replica to its own tempered energy: x' = E(x)/T."""

    def step(self, energy, x, ctx):
        with torch.no_grad():
            return StepResult(energy(x, ctx.cond)[:, None].to(x.dtype))


M = 4.5  # barrier ≈ 10: a chain at temperature 1 crosses it about once in 10^4 time units
LADDER = {"num_temperatures": 6, "max_temperature": 50.0}
# (transition, steps): MALA is exact for E/T; Langevin with noise_std unset is exact up to its step-size bias
KERNELS = {"mala": ({"name": "mala", "step_size": 1.0}, 300), "langevin": ({"name": "langevin", "step_size": 0.3}, 600)}


def sample(sampler: str, steps: int, transition: dict, n: int = 1000, seed: int = 0, **params):
    energy = TwoModes(M)
    x0 = -M + torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    if sampler == "chain":
        params = {**params, "transitions": [transition]}
    else:
        params = {**LADDER, **params, "transitions": [transition]}
    return ebmkit.sample(energy, n, x0=x0, sampler=sampler, steps=steps, seed=seed, return_result=True, **params)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_single_chain_stays_in_its_mode_and_tempering_fills_both(kernel):
    transition, steps = KERNELS[kernel]
    alone = sample("chain", steps, transition).x[:, 0]
    tempered = sample("parallel_tempering", steps, transition)
    x = tempered.x[:, 0]
    # every chain starts in the mode at −m; the other mode holds half the mass
    assert (alone > 0).double().mean() < 0.05
    assert abs(float((x > 0).double().mean()) - 0.5) < 0.1  # 1000 chains: standard error 0.016
    # the returned chains are the T = 1 ones: each mode has the width of the target (1), not of a hot replica
    for mode in (x[x > 0] - M, x[x < 0] + M):
        assert 0.85 < float(mode.std()) < 1.2  # Langevin's step-size bias widens it by about 8 %
    rates = [tempered.trace[f"swap_rate_{k}_{k + 1}"].mean() for k in range(LADDER["num_temperatures"] - 1)]
    assert all(0.0 < float(r) < 1.0 for r in rates), rates
    assert 0.0 < float(tempered.trace["swap_rate"].mean()) < 1.0


@pytest.mark.parametrize("c, log_alpha", [(-2.0, -0.5), (4.0, 1.0), (-8.0, -2.0), (0.0, 0.0)])
def test_swaps_are_accepted_with_the_replica_exchange_probability(c, log_alpha):
    """Hand computation: E(x) = x and ToEnergy take replica k from x0 = c to c/T_k; with T = (1, 2),
    α = min(1, exp((1/1 − 1/2)(E(x_1) − E(x_2)))) = min(1, exp((1 − 1/2)(c − c/2))) = min(1, exp(c/4))."""
    n = 20_000
    sampler = ParallelTempering(steps=1, transitions=[ToEnergy()], temperatures=(1.0, 2.0))
    x0 = torch.full((n, 1), c, dtype=torch.float64)
    torch.manual_seed(3)
    result = sampler.sample(Linear(), x0)
    assert math.isclose(log_alpha, c / 4)
    expected = min(1.0, math.exp(log_alpha))
    # 20000 chains: standard error at most 0.0035
    assert float(result.trace["swap_rate_0_1"][0]) == pytest.approx(expected, abs=0.015)
    # each chain's decision is one uniform of torch's global generator, drawn after the transitions'
    torch.manual_seed(3)
    accepted = torch.rand(1, n, dtype=torch.float64).log()[0] < log_alpha
    assert torch.equal(result.x[:, 0], torch.where(accepted, torch.tensor(c / 2, dtype=torch.float64), torch.tensor(c, dtype=torch.float64)))


def test_the_cold_replica_takes_the_lower_energy_and_the_hot_one_the_higher():
    """A swap that lowers the cold replica's energy is always accepted; the states are exchanged, not copied."""
    sampler = ParallelTempering(steps=1, transitions=[ToEnergy()], temperatures=(1.0, 4.0))
    x0 = torch.tensor([[8.0], [-8.0]], dtype=torch.float64)  # c/4 < c for c > 0: the hot replica holds the lower energy
    torch.manual_seed(0)
    result = sampler.sample(Linear(), x0)
    # chain 0: E = 8 cold, 2 hot: log α = (1 − 1/4)(8 − 2) > 0, always swapped; chain 1: log α = (3/4)(−8 + 2) = −4.5
    assert float(result.x[0, 0]) == 2.0
    assert float(result.trace["swap_rate_0_1"][0]) in (0.5, 1.0)


def test_pairs_alternate_even_and_odd_rounds():
    x0 = torch.zeros(3, 1)
    result = ParallelTempering(steps=5, transitions=[Langevin(step_size=0.1)], num_temperatures=4, max_temperature=8.0).sample(Linear(), x0)
    lengths = {key: len(value) for key, value in result.trace.items() if key.startswith("swap_rate")}
    assert lengths == {"swap_rate": 5, "swap_rate_0_1": 3, "swap_rate_2_3": 3, "swap_rate_1_2": 2}
    result = ParallelTempering(steps=5, transitions=[Langevin(step_size=0.1)], temperatures=(1.0, 3.0), swap_every=2).sample(Linear(), x0)
    assert len(result.trace["swap_rate_0_1"]) == 2 and len(result.trace["energy"]) == 5  # two rungs: (0, 1) every round


def test_one_temperature_is_the_chain_sampler():
    transitions = [Scheduled(MALA(step_size=0.3)), Scheduled(Langevin(step_size=0.05), every=2)]
    x0 = torch.randn(64, 2, dtype=torch.float64)
    torch.manual_seed(5)
    chain = Chain(steps=7, transitions=transitions).sample(TwoModes(2.0), x0)
    torch.manual_seed(5)
    tempered = ParallelTempering(steps=7, transitions=transitions, temperatures=(1.0,)).sample(TwoModes(2.0), x0)
    assert torch.equal(chain.x, tempered.x)
    assert chain.trace.keys() == tempered.trace.keys()
    assert all(torch.equal(chain.trace[key], tempered.trace[key]) for key in chain.trace)


def test_it_is_deterministic_under_a_seed():
    transition, _ = KERNELS["mala"]
    first, again = sample("parallel_tempering", 20, transition, n=50), sample("parallel_tempering", 20, transition, n=50)
    other = sample("parallel_tempering", 20, transition, n=50, seed=1)
    assert torch.equal(first.x, again.x) and torch.equal(first.trace["swap_rate"], again.trace["swap_rate"])
    assert not torch.equal(first.x, other.x)


def test_each_replica_is_conditioned_as_its_chain():
    energy = ConditionalBowl([-3.0, 0.0, 3.0])
    cond = torch.arange(600) % 3
    result = ebmkit.sample(energy, 600, x0=torch.zeros(600, 1, dtype=torch.float64), cond=cond, sampler="parallel_tempering",
                           steps=100, seed=0, transitions=[{"name": "mala", "step_size": 0.5}], num_temperatures=3,
                           max_temperature=9.0, return_result=True)
    for label, centre in enumerate([-3.0, 0.0, 3.0]):
        x = result.x[cond == label, 0]
        assert abs(float(x.mean()) - centre) < 0.2 and 0.8 < float(x.std()) < 1.2


def test_it_does_not_read_the_device_while_sampling(monkeypatch):
    """No float(), item() or bool() of a tensor in the loop: each would wait for the device."""
    plugins = str(Path(__file__).parents[1] / "ebmkit" / "plugins")
    reads = []
    for name in ("__bool__", "__float__", "__int__", "item", "tolist", "nonzero", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(plugins):
                reads.append(f"{_name} in {Path(sys._getframe(1).f_code.co_filename).name}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    sampler = ParallelTempering(steps=6, transitions=[MALA(step_size=0.3)], num_temperatures=3, max_temperature=4.0, swap_every=2)
    result = sampler.sample(TwoModes(2.0), torch.randn(8, 1), cond=None)
    assert reads == []
    assert all(isinstance(value, torch.Tensor) and value.dim() == 1 for value in result.trace.values())


@pytest.mark.parametrize("params", [
    {"transitions": [{"name": "mala", "step_size": 0.05}], "num_temperatures": 3, "max_temperature": 4.0},
    {"transitions": [{"name": "langevin", "step_size": 0.05}, {"name": "hmc", "step_size": 0.05, "leapfrog_steps": 2, "every": 2}],
     "temperatures": [1.0, 2.0], "swap_every": 2},
    {"transitions": [{"name": "langevin", "step_size": 0.05}], "num_temperatures": 1},
], ids=["mala", "langevin-hmc", "one-temperature"])
@pytest.mark.parametrize("classes", [None, 3], ids=["unconditional", "conditional"])
def test_contract(params, classes):
    ran = check_component("sampler", "parallel_tempering", {"steps": 4, **params}, dataset=Points(num_classes=classes))
    assert ran == ["shapes", "detaching", "determinism"]  # it keeps no state: there is no round trip to check


def test_it_keeps_no_graph(tmp_path):
    from ebmkit._recipes.recipe import validate
    from ebmkit._engine.run import setup
    from tests.test_registry_smoke import TWO_D

    sampler = ParallelTempering(steps=2, transitions=[Langevin(step_size=0.1)], temperatures=(1.0, 2.0))
    assert sampler.max_graph_steps == 0
    with pytest.raises(EbmkitError, match="keeps no graph"):
        sampler.sample(Linear(), torch.zeros(2, 1), keep_graph=1)
    data = {**copy.deepcopy(TWO_D), "sampler": {"name": "parallel_tempering", "steps": 2, "temperatures": [1.0, 2.0],
                                                  "transitions": [{"name": "mala", "step_size": 0.01}]},
            "losses": [{"name": "cd"}, {"name": "kl", "last_steps": 1}]}
    with pytest.raises(RecipeError, match=r"losses\[1\].*keeps at most 0"):
        setup(validate(data, "tempering with kl"), tmp_path, live=False)


@pytest.mark.parametrize("params, message", [
    ({"temperatures": [2.0, 3.0]}, "must start at 1.0"),
    ({"temperatures": [1.0, 3.0, 2.0]}, "increase strictly"),
    ({}, "give the ladder"),
    ({"temperatures": [1.0, 2.0], "num_temperatures": 2, "max_temperature": 2.0}, "not both"),
    ({"num_temperatures": 4}, "needs max_temperature"),
    ({"num_temperatures": 4, "max_temperature": 0.5}, "above 1"),
    ({"num_temperatures": 3, "max_temperature": 4.0, "transitions": [{"name": "mala", "step_size": 0.1, "temperature": 2.0}]},
     "leave the transition's own temperature at 1"),
])
def test_a_wrong_ladder_is_refused_with_its_key(params, message):
    values = {"steps": 2, "transitions": [{"name": "mala", "step_size": 0.1}], **params}
    with pytest.raises(RecipeError, match=message):
        ebmkit.create("samplers", "parallel_tempering", **values)


def test_a_geometric_ladder_runs_from_1_to_max_temperature():
    ladder = ParallelTempering(steps=1, transitions=[Langevin(step_size=0.1)], num_temperatures=4, max_temperature=8.0).ladder()
    assert ladder[0] == 1.0 and ladder[-1] == 8.0
    assert ladder == pytest.approx([1.0, 2.0, 4.0, 8.0])


def test_a_recipe_trains_with_it(tmp_path):
    from ebmkit._engine.loop import Trainer
    from ebmkit._recipes.recipe import validate
    from ebmkit._engine.run import setup
    from tests.test_registry_smoke import TWO_D

    data = copy.deepcopy(TWO_D)
    data["sampler"] = {"name": "parallel_tempering", "steps": 2, "num_temperatures": 2, "max_temperature": 4.0,
                       "transitions": [{"name": "mala", "step_size": 0.01}]}
    threads = torch.get_num_threads()
    try:
        result = Trainer(setup(validate(data, "tempering"), tmp_path, live=False)).fit()
    finally:
        torch.set_num_threads(threads)
    assert result.metrics["updates"] == 2 and math.isfinite(result.metrics["loss"])
    assert "sampler/swap_rate_0_1" in result.metrics
