"""Transitions and samplers against exact answers: Gaussian and mixture moments, per-chain MH."""

from __future__ import annotations

import math

import pytest
import torch

import ebmkit
from ebmkit import Energy
from ebmkit._host.protocols import StepContext, StepResult
from ebmkit.plugins.mcmc.chain import Chain, Scheduled
from ebmkit.plugins.mcmc.hmc import HMC
from ebmkit.plugins.mcmc.mala import MALA


class Gaussian(Energy):
    def __init__(self, mean, cov):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("precision", torch.linalg.inv(torch.tensor(cov, dtype=torch.float64)))

    def forward(self, x, cond=None):
        d = x - self.mean
        return 0.5 * torch.einsum("bi,ij,bj->b", d, self.precision, d)


class Mixture(Energy):
    """−log Σ_k w_k N(x; μ_k, s_k² I) in 2-D."""

    def __init__(self, weights, means, stds):
        super().__init__()
        self.log_w = torch.log(torch.tensor(weights, dtype=torch.float64))
        self.means = torch.tensor(means, dtype=torch.float64)
        self.stds = torch.tensor(stds, dtype=torch.float64)

    def forward(self, x, cond=None):
        d2 = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        logs = self.log_w - d2 / (2 * self.stds**2) - 2 * torch.log(self.stds) - math.log(2 * math.pi)
        return -torch.logsumexp(logs, 1)

    def moments(self):
        w = self.log_w.exp()
        mean = (w[:, None] * self.means).sum(0)
        second = sum(w[k] * (self.stds[k] ** 2 * torch.eye(2, dtype=torch.float64) + torch.outer(self.means[k], self.means[k])) for k in range(len(w)))
        return mean, second - torch.outer(mean, mean)


MEAN, COV = [1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]]
# (sampler, params, steps); tolerances are stated per test below.
KERNELS = {
    "mala": ({"step_size": 0.15}, 300),
    "hmc": ({"step_size": 0.2, "leapfrog_steps": 5}, 150),
    "langevin": ({"step_size": 0.005}, 1500),  # exact (unadjusted) Langevin at a small step
}


@pytest.mark.parametrize("kernel", KERNELS)
def test_correlated_gaussian_moments(kernel):
    params, steps = KERNELS[kernel]
    x0 = torch.randn(3000, 2, dtype=torch.float64) * 2
    result = ebmkit.sample(Gaussian(MEAN, COV), 3000, x0=x0, sampler=kernel, steps=steps, seed=0, return_result=True, **params)
    x = result.x
    # 3000 chains: Monte-Carlo standard errors are about 0.02 for the mean, 0.03 for the covariance.
    torch.testing.assert_close(x.mean(0), torch.tensor(MEAN, dtype=torch.float64), atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), torch.tensor(COV, dtype=torch.float64), atol=0.1, rtol=0)
    if kernel != "langevin":
        assert 0.3 < result.trace["accept"][-1] <= 1.0


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_gaussian_mixture_moments(kernel):
    target = Mixture([0.3, 0.7], [[-1.5, 0.0], [1.5, 0.5]], [0.8, 1.0])
    mean, cov = target.moments()
    params = {"mala": {"step_size": 0.3}, "hmc": {"step_size": 0.25, "leapfrog_steps": 8}}[kernel]
    steps = {"mala": 600, "hmc": 200}[kernel]
    x0 = torch.randn(3000, 2, dtype=torch.float64) * 3
    x = ebmkit.sample(target, 3000, x0=x0, sampler=kernel, steps=steps, seed=1, **params)
    # Tolerances: 4-5 Monte-Carlo standard errors of 3000 chains on moments of size ~1-3.
    torch.testing.assert_close(x.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.15, rtol=0)


class Quartic(Energy):
    def forward(self, x, cond=None):
        return (x**4).sum(1) / 4


@pytest.mark.parametrize("kernel", [MALA(step_size=0.1), HMC(step_size=0.1, leapfrog_steps=3)], ids=["mala", "hmc"])
def test_accept_reject_is_decided_per_chain(kernel):
    torch.manual_seed(0)
    good = torch.randn(200, 1, dtype=torch.float64) * 0.5
    bad = torch.full((200, 1), 30.0, dtype=torch.float64)  # gradient 27000: every proposal explodes
    x = torch.cat([good, bad])
    accepted = torch.zeros(400, dtype=torch.float64)
    for i in range(20):
        result = kernel.step(Quartic(), x, StepContext(index=i, total=20))
        accepted += result.stats["accept"]
        x = result.x
    # One decision for the whole batch would freeze the good half along with the bad one.
    assert accepted[:200].mean() / 20 > 0.8
    assert accepted[200:].sum() == 0 and torch.all(x[200:] == 30.0)
    assert (x[:200] - good).abs().mean() > 0.1


def test_annealed_langevin_ends_at_the_target():
    result = ebmkit.sample(Gaussian(MEAN, COV), 3000, shape=(2,), sampler="annealed_langevin", step_size=0.02,
                           levels=5, steps_per_level=300, t_max=20.0, seed=2, return_result=True)
    temps = result.trace["temperature"]
    assert temps[0] == 20.0 and temps[-1] == pytest.approx(1.0) and temps == sorted(temps, reverse=True)
    torch.testing.assert_close(result.x.mean(0), torch.tensor(MEAN), atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(result.x.T), torch.tensor(COV), atol=0.1, rtol=0)


class Counter:
    def __init__(self):
        self.calls = []

    def step(self, energy, x, ctx):
        self.calls.append(ctx.index)
        return StepResult(x + 1)


def test_chain_interleaves_transitions_every_n_steps():
    kernel, every5 = Counter(), Counter()
    chain = Chain(steps=20, transitions=[Scheduled(kernel, 1), Scheduled(every5, 5)])
    out = chain.sample(Gaussian([0.0], [[1.0]]), torch.zeros(3, 1)).x
    assert kernel.calls == list(range(20)) and every5.calls == [4, 9, 14, 19]
    assert torch.all(out == 24)


class Net(Energy):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 8)
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x, cond=None):
        return self.out(torch.tanh(self.lin(x))).squeeze(1)


@pytest.mark.parametrize("sampler", ["chain", "annealed_langevin"])
def test_keep_last_graph_redoes_the_last_step_with_the_same_noise(sampler, registries):
    torch.manual_seed(0)
    energy = Net()
    if sampler == "chain":
        langevin = registries.get("transitions", "langevin").build({"step_size": 0.1})
        built = Chain(steps=4, transitions=[Scheduled(langevin, 1)])
    else:
        built = registries.get("samplers", sampler).build({"step_size": 0.1, "levels": 2, "steps_per_level": 2})
    x0 = torch.randn(16, 2)
    torch.manual_seed(1)
    with_graph = built.sample(energy, x0, keep_graph=1)
    torch.manual_seed(1)
    plain = built.sample(energy, x0)
    assert torch.equal(with_graph.x, plain.x)  # the redo consumed no random numbers of the run
    torch.testing.assert_close(with_graph.x_graph.detach(), with_graph.x)
    (grad,) = torch.autograd.grad(with_graph.x_graph.sum(), energy.lin.weight)
    assert grad.abs().sum() > 0
