"""RBMs on binarised real digits: the held-out likelihood evaluator, scikit-learn's BernoulliRBM read
into an ebmkit RBM, and ebmkit's PCD-1 against scikit-learn's on the same budget."""

from __future__ import annotations

import copy

import pytest
import torch

from ebmkit._host.errors import EbmkitError
from ebmkit._host.protocols import EvalContext
from ebmkit.plugins.rbm.evaluator import RBMLikelihood
from ebmkit.plugins.rbm.likelihood import all_states, exact_log_z
from ebmkit.plugins.rbm.rbm import BinaryRBM

pytest.importorskip("sklearn")

from sklearn.neural_network import BernoulliRBM  # noqa: E402

from ebmkit.plugins.images.digits import Digits  # noqa: E402
from tests.conftest import load_benchmark  # noqa: E402



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("rbm_digits")


def brute_force_log_likelihood(rbm: BinaryRBM, v: torch.Tensor) -> float:
    """Mean log p(v) from the joint energy, summing every hidden state and every visible one."""
    rbm = copy.deepcopy(rbm).double()
    hidden = all_states(rbm.num_hidden)
    with torch.no_grad():
        joint = torch.stack([-rbm.joint_energy(v, h.expand(len(v), -1)) for h in hidden], 1)
    return float((torch.logsumexp(joint, 1) - exact_log_z(rbm)).mean())


def test_the_likelihood_evaluator_scores_the_held_out_split_it_is_given(tmp_path):
    torch.manual_seed(0)
    rbm = BinaryRBM(hidden=5, init_std=0.3, data_shape=(1, 8, 8))
    train, test = Digits(split="train", binarize=True), Digits(split="test", binarize=True)
    ctx = EvalContext(rbm, train, None, None, tmp_path, 0, torch.device("cpu"))
    scored = RBMLikelihood(data=test, num_data=360).evaluate(ctx)
    held_out = torch.stack([test[i] for i in range(360)]).flatten(1).double()
    assert scored["exact"] == 1.0
    assert scored["log_likelihood"] == pytest.approx(brute_force_log_likelihood(rbm, held_out), abs=1e-4)
    on_train = RBMLikelihood(num_data=360).evaluate(ctx)["log_likelihood"]
    assert on_train != pytest.approx(scored["log_likelihood"], abs=1e-3)
    with pytest.raises(EbmkitError, match="64 values, the RBM 16 visible units"):
        RBMLikelihood(data=test).evaluate(EvalContext(BinaryRBM(hidden=3, data_shape=(16,)), train, None, None, tmp_path, 0, torch.device("cpu")))


def test_a_bernoulli_rbm_read_into_ebmkit_has_its_conditionals(bench):
    v = bench.digits_split("train")[:200]
    model = BernoulliRBM(n_components=6, learning_rate=0.1, batch_size=10, n_iter=2, random_state=0).fit(v.numpy())
    rbm = bench.as_ebmkit_rbm(model, BinaryRBM)
    # transform is scikit-learn's p(h = 1 | v): the weights' orientation and the hidden biases
    assert torch.allclose(rbm.hidden_probs(v), torch.from_numpy(model.transform(v.numpy())), atol=1e-12)
    assert torch.equal(rbm.visible_bias.detach(), torch.from_numpy(model.intercept_visible_))
    assert bench.held_out_log_likelihood(rbm, v, 0)["exact_ll"] == pytest.approx(brute_force_log_likelihood(rbm, v), abs=1e-6)


def test_ebmkit_pcd1_learns_digits_as_well_as_scikit_learns_on_the_same_budget(bench, tmp_path, monkeypatch):
    """Two epochs, 8 hidden units, lr 0.1, batch 10: the same algorithm in two implementations
    reaches the same exact held-out log-likelihood within a nat, far above the untrained model."""
    monkeypatch.setattr(bench, "AIS_BETAS", 1000)
    test = bench.digits_split("test")
    ours = bench.run_one("ebmkit PCD-1", 8, 0.1, 2, 0, tmp_path)
    theirs = bench.run_one("scikit-learn BernoulliRBM (PCD-1)", 8, 0.1, 2, 0, tmp_path)
    untrained = bench.held_out_log_likelihood(BinaryRBM(hidden=8, init_std=0.0, data_shape=(64,)), test, 0)["exact_ll"]
    assert untrained == pytest.approx(-64 * torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    assert ours["exact_ll"] > untrained + 10 and theirs["exact_ll"] > untrained + 10
    assert abs(ours["exact_ll"] - theirs["exact_ll"]) < 1.0
    assert abs(ours["ais_ll"] - ours["exact_ll"]) < 0.1
