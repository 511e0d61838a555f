"""Improved CD's loss terms against independent computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ebmkit._host.protocols import TrainBatch
from ebmkit.plugins.cd.cd import ContrastiveDivergence
from ebmkit.plugins.cd.energy_l2 import EnergyL2
from ebmkit.plugins.improved_cd.kl import KLTerm
from ebmkit.plugins.improved_cd.nn_entropy import NearestNeighbourEntropy
from ebmkit.plugins.improved_cd.resnet import ResNetEnergy
from ebmkit.plugins.mcmc.chain import Chain, Scheduled
from ebmkit.plugins.mcmc.langevin import Langevin
from ebmkit.plugins.mcmc.replay import ReplayBuffer
from ebmkit.plugins.toy.mlp import MLPEnergy

STEP, NOISE = 0.1, 0.05


def tiny_energy():
    torch.manual_seed(0)
    return MLPEnergy(hidden=6, depth=2, activation="softplus", data_shape=(2,)).double()


def kl_through_ebmkit(energy, x0, steps, last_steps, seed=3):
    chain = Chain(steps=steps, transitions=[Scheduled(Langevin(step_size=STEP, noise_std=NOISE, noise_first=True), 1)])
    torch.manual_seed(seed)
    result = chain.sample(energy, x0, keep_graph=last_steps)
    batch = TrainBatch(energy, x0, x_neg=result.x, x_neg_graph=result.x_graph)
    value = KLTerm(last_steps=last_steps)(batch).value
    return value, torch.autograd.grad(value, list(energy.parameters()), allow_unused=True, materialize_grads=True)


def unrolled(energy, params_energy, x0, steps, last_steps, seed=3):
    """The same chain written out by hand: detached steps, then `last_steps` differentiable ones."""
    torch.manual_seed(seed)
    x = x0
    for i in range(steps):
        x = x + NOISE * torch.randn_like(x)
        differentiable = i >= steps - last_steps
        if not differentiable:
            x = x.detach()
        x_in = x if (differentiable and x.requires_grad) else x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(params_energy(x_in).sum(), x_in, create_graph=differentiable)
        x = x_in - STEP * g
        if not differentiable:
            x = x.detach()
    frozen = copy.deepcopy(energy).requires_grad_(False)  # an independent frozen copy
    return frozen(x).mean()


@pytest.mark.parametrize(("steps", "last_steps"), [(1, 1), (4, 1), (4, 2)])
def test_kl_gradient_matches_an_explicit_unroll(steps, last_steps):
    energy = tiny_energy()
    x0 = torch.randn(16, 2, dtype=torch.float64)
    value, grads = kl_through_ebmkit(energy, x0, steps, last_steps)
    want_value = unrolled(energy, energy, x0, steps, last_steps)
    want = torch.autograd.grad(want_value, list(energy.parameters()), allow_unused=True, materialize_grads=True)
    torch.testing.assert_close(value, want_value)
    for g, w in zip(grads, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
    assert sum(g.abs().sum() for g in grads) > 0


def test_kl_gradient_matches_finite_differences_and_has_no_direct_term():
    energy = tiny_energy()
    x0 = torch.randn(8, 2, dtype=torch.float64)
    # One step, so finite differences see exactly what the KL term differentiates: with more
    # steps they would also move the earlier, detached steps, which the term leaves out by design.
    _, grads = kl_through_ebmkit(energy, x0, steps=1, last_steps=1)
    frozen = copy.deepcopy(energy)
    params = list(energy.parameters())

    def objective() -> float:
        # θ moves the sampler only; the energy evaluated at x_kl stays the frozen θ0 one.
        with torch.enable_grad():
            return float(unrolled(frozen, energy, x0, 1, 1).detach())

    eps = 1e-6
    for p_index, flat_index in [(0, 0), (0, 5), (2, 3), (len(params) - 2, 1)]:
        p = params[p_index]
        with torch.no_grad():
            p.view(-1)[flat_index] += eps
        up = objective()
        with torch.no_grad():
            p.view(-1)[flat_index] -= 2 * eps
        down = objective()
        with torch.no_grad():
            p.view(-1)[flat_index] += eps
        fd = (up - down) / (2 * eps)
        assert grads[p_index].view(-1)[flat_index].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)
    # The gradient reaches θ only through ∇ₓE in the sampler's step. The output bias shifts E
    # but not ∇ₓE, so its KL gradient is exactly 0; a direct ∂E/∂θ term would make it 1.
    assert grads[-1].item() == 0.0


def test_entropy_gradient_pushes_the_kl_samples_apart():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=2000, noise=lambda n: torch.zeros(n, 3, 4, 4))
    buffer.push(torch.rand(2000, 3, 4, 4))
    term = NearestNeighbourEntropy(num_reference=100, min_buffer=1000)
    x = (torch.rand(32, 3, 4, 4) * 0.8 + 0.1).requires_grad_(True)
    batch = TrainBatch(None, x, x_neg=x.detach(), x_neg_graph=x, reference_set=buffer)
    torch.manual_seed(1)
    out = term(batch)
    (grad,) = torch.autograd.grad(out.value, x)
    torch.manual_seed(1)
    reference = buffer.reference_samples(100)

    def nearest(points):
        return torch.cdist(points.flatten(1), reference.flatten(1)).min(1).values

    before = nearest(x.detach())
    after = nearest(x.detach() - 1e-3 * grad)  # a gradient step on the loss (weight > 0)
    assert torch.all(after > before)
    assert out.value.item() == pytest.approx(-torch.log(before).mean().item())


def test_entropy_distance_is_exact_for_close_points_far_from_the_origin():
    """A pair 1e-3 apart at |x| ≈ 3: the matmul form of cdist cancels to 0 there (log 0 = -inf)."""
    torch.manual_seed(0)
    reference = torch.randn(200, 2) * 0.5 + 3.0
    buffer = ReplayBuffer(capacity=200, noise=lambda n: torch.zeros(n, 2))
    buffer.push(reference)
    x = (reference[:64] + torch.tensor([1e-3, 0.0])).requires_grad_(True)
    batch = TrainBatch(None, x, x_neg=x.detach(), x_neg_graph=x, reference_set=buffer)
    out = NearestNeighbourEntropy(num_reference=200, min_buffer=0)(batch)
    (grad,) = torch.autograd.grad(out.value, x)
    # Drawn with replacement, the reference set holds most of the points; each x is 1e-3 from its own.
    assert math.isfinite(out.value.item()) and torch.isfinite(grad).all()
    assert out.value.item() < -math.log(1e-4)


def test_entropy_term_waits_for_the_buffer_to_fill():
    buffer = ReplayBuffer(capacity=2000, noise=lambda n: torch.zeros(n, 2))
    buffer.push(torch.rand(1000, 2))
    x = torch.rand(4, 2, requires_grad=True)
    batch = TrainBatch(None, x, x_neg=x.detach(), x_neg_graph=x, reference_set=buffer)
    out = NearestNeighbourEntropy(min_buffer=1000)(batch)
    assert out.value.item() == 0.0 and out.metrics["nn_entropy/active"] == 0.0


def test_multiscale_losses_average_scales_and_square_each_scale():
    torch.manual_seed(0)
    energy = ResNetEnergy(width=8, data_shape=(3, 16, 16))
    x_pos, x_neg = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    batch = TrainBatch(energy, x_pos, x_neg=x_neg)
    pos, neg = energy(x_pos, per_scale=True), energy(x_neg, per_scale=True)
    assert pos.shape == (4, 3)
    torch.testing.assert_close(ContrastiveDivergence()(batch).value, pos.mean() - neg.mean())
    torch.testing.assert_close(EnergyL2()(batch).value, (pos**2).mean() + (neg**2).mean())
    torch.testing.assert_close(batch.e_pos, pos.sum(1))  # E(x+) is the energy itself
    torch.testing.assert_close(energy(x_pos), pos.sum(1))  # samplers see the sum over scales


def test_parameter_counts_match_the_reference():
    from ebmkit.plugins.improved_cd.resnet import ResNetEnergy128

    def count(model):
        return sum(p.numel() for p in model.parameters())

    assert round(count(ResNetEnergy(width=64, data_shape=(3, 32, 32))) / 1e6, 2) == 6.64
    assert round(count(ResNetEnergy(width=64, multiscale=False, data_shape=(3, 32, 32))) / 1e6, 2) == 4.90
    assert round(count(ResNetEnergy128(width=128, data_shape=(3, 128, 128))) / 1e6, 1) == 27.1
    assert round(count(ResNetEnergy128(width=64, data_shape=(3, 128, 128))) / 1e6, 2) == 6.79


def test_kl_and_entropy_terms_on_the_first_chains_only():
    """LSUN in the reference: the KL and entropy terms see the first n = 32 chains of the batch."""
    from ebmkit._host.protocols import TrainBatch
    from ebmkit._host.installed import default_registries

    registries = default_registries()
    energy = registries.get("energies", "mlp").factory(data_shape=(2,), hidden=8, depth=1)
    x = torch.randn(6, 2, requires_grad=True)
    batch = TrainBatch(energy, torch.randn(6, 2), None)
    batch.x_neg, batch.x_neg_graph = x.detach(), x
    kl = registries.get("losses", "kl").factory
    first = kl(chains=2)(batch).value
    assert first.item() == pytest.approx(energy(x[:2]).mean().item(), rel=1e-6)
    assert kl()(batch).value.item() == pytest.approx(energy(x).mean().item(), rel=1e-6)


@pytest.mark.parametrize(("push", "active_at_first_update"), [("before_losses", 1.0), ("after_step", 0.0)])
def test_the_entropy_term_sees_this_batchs_samples_when_they_are_pushed_before_the_losses(
    run_cli, tmp_path, push, active_at_first_update
):
    """The reference pushes the new samples before it computes the losses: its entropy term
    switches on one update earlier, and its reference set may hold the batch's own samples."""
    from tests.conftest import RECIPES, read_metrics

    out = tmp_path / push
    settings = ["train.steps=2", "train.batch_size=8", "train.log_every=1", "evaluators=[]", "losses.3.min_buffer=7",
                "data.size=64", "data.image_size=16", "energy.width=8", "sampler.steps=2", f"train.push_negatives={push}"]
    # the shapes recipe's buffer stores uint8 and augments its draws, as the reference's does
    result = run_cli("run", str(RECIPES / "improved_cd_shapes.toml"), "--out", str(out), *[a for s in settings for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    rows = [row for row in read_metrics(out) if "nn_entropy/active" in row]
    assert [row["nn_entropy/active"] for row in rows] == [active_at_first_update, 1.0]


def test_the_reservoir_fills_by_whole_batches_as_the_reference_does():
    buffer = ReplayBuffer(capacity=10_000, policy="reservoir", noise=torch.zeros)
    for _ in range(100):
        buffer.push(torch.rand(128, 1))
    assert buffer.size == 10_112 and len(buffer.storage) == 10_112  # 79 batches, then it keeps its size
    again = ReplayBuffer(capacity=10_000, policy="reservoir", noise=torch.zeros)
    again.load_state_dict(buffer.state_dict())
    again.push(torch.rand(128, 1))
    assert again.size == 10_112
