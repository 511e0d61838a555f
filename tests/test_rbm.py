"""RBMs against exact answers: brute-force sums over every state, and AIS against enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from ebmkit._host.protocols import StepContext
from ebmkit.plugins.rbm.gibbs import BlockGibbs
from ebmkit.plugins.rbm.likelihood import ais_log_z, all_states, exact_log_z
from ebmkit.plugins.rbm.rbm import BinaryRBM


def random_rbm(visible, hidden, scale, seed=0):
    torch.manual_seed(seed)
    rbm = BinaryRBM(hidden=hidden, data_shape=(visible,)).double()
    with torch.no_grad():
        rbm.weight.normal_(0, scale)
        rbm.visible_bias.normal_(0, 0.5)
        rbm.hidden_bias.normal_(0, 0.5)
    return rbm


def test_free_energy_and_exact_likelihood_match_a_brute_force_sum():
    rbm = random_rbm(6, 4, 1.0)
    vs, hs = all_states(6), all_states(4)
    joint = torch.stack([-rbm.joint_energy(vs, h.expand(len(vs), -1)) for h in hs], 1).detach()  # (2^6, 2^4)
    log_z_brute = torch.logsumexp(joint.flatten(), 0)
    torch.testing.assert_close(-rbm(vs).detach(), torch.logsumexp(joint, 1))  # F(v) sums out h exactly
    assert exact_log_z(rbm) == pytest.approx(float(log_z_brute), abs=1e-10)
    data = vs[torch.tensor([3, 17, 40, 63])]
    exact_ll = (-rbm(data).detach() - exact_log_z(rbm)).mean()
    brute_ll = (torch.logsumexp(joint[[3, 17, 40, 63]], 1) - log_z_brute).mean()
    assert float(exact_ll) == pytest.approx(float(brute_ll), abs=1e-10)
    big = random_rbm(4, 6, 1.0)  # the visible layer is the smaller one: enumerated instead
    joint = torch.stack([-big.joint_energy(all_states(4), h.expand(16, -1)) for h in all_states(6)], 1).detach()
    assert exact_log_z(big) == pytest.approx(float(torch.logsumexp(joint.flatten(), 0)), abs=1e-10)


def test_ais_lands_within_a_tenth_of_a_nat_of_exact_on_12_hidden_units():
    rbm = random_rbm(30, 12, 0.3, seed=1)
    exact = exact_log_z(rbm)
    estimate = ais_log_z(rbm, chains=200, betas=3000, generator=torch.Generator().manual_seed(0))
    assert abs(estimate - exact) < 0.1, (estimate, exact)


def test_block_gibbs_samples_the_exact_marginal():
    rbm = random_rbm(4, 3, 1.0, seed=2)
    vs = all_states(4)
    exact = torch.softmax(-rbm(vs), 0)
    x = torch.zeros(20000, 4, dtype=torch.float64)
    torch.manual_seed(0)
    for i in range(30):
        x = BlockGibbs().step(rbm, x, StepContext(index=i, total=30)).x
    index = (x @ torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).long()
    empirical = torch.bincount(index, minlength=16).double() / len(x)
    assert 0.5 * (empirical - exact).abs().sum() < 0.03  # sampling noise with 20k chains is about 0.01


def test_states_enumerate_in_binary_order():
    assert all_states(2).tolist() == [list(map(float, s)) for s in itertools.product([0, 1], repeat=2)]


def test_likelihood_evaluator_is_the_exact_mean_log_likelihood(tmp_path):
    from ebmkit._host.protocols import EvalContext
    from ebmkit.plugins.rbm.evaluator import RBMLikelihood

    rbm = random_rbm(6, 4, 1.0).float()
    data = all_states(6).float()[::5]
    ctx = EvalContext(rbm, data, None, None, tmp_path, 0, torch.device("cpu"))
    metrics = RBMLikelihood(num_data=100).evaluate(ctx)
    joint = torch.stack([-rbm.double().joint_energy(all_states(6), h.expand(64, -1)) for h in all_states(4)], 1).detach()
    brute = (torch.logsumexp(joint[::5], 1) - torch.logsumexp(joint.flatten(), 0)).mean()
    assert metrics["exact"] == 1.0 and metrics["log_likelihood"] == pytest.approx(float(brute), abs=1e-4)


def test_persistent_chains_continue_and_data_chains_restart():
    from ebmkit.plugins.mcmc.persistent import DataChains, PersistentChains

    chains = PersistentChains(noise=lambda n: torch.zeros(n, 3))
    data = torch.ones(4, 3)
    assert torch.equal(chains.draw(4, data), torch.zeros(4, 3))
    chains.push(torch.full((4, 3), 7.0))
    assert torch.equal(chains.draw(4, data), torch.full((4, 3), 7.0))
    again = PersistentChains(noise=lambda n: torch.zeros(n, 3))
    again.load_state_dict(chains.state_dict())
    assert torch.equal(again.draw(4, data), torch.full((4, 3), 7.0))
    assert torch.equal(DataChains().draw(4, data), data)


def test_binarised_shapes_are_one_channel_binary(registries):
    data = registries.get("datasets", "shapes").build({"size": 20, "image_size": 16, "binarize": True})
    x = torch.stack([data[i] for i in range(20)])
    assert data.sample_shape == (1, 16, 16) and x.shape == (20, 1, 16, 16)
    assert set(x.unique().tolist()) == {0.0, 1.0} and 0.02 < x.mean() < 0.5
