"""Replay buffers: reservoir statistics, FIFO order, uint8 storage, draws, and saved state."""

from __future__ import annotations

import pytest
import torch

from ebmkit._recipes.recipe import load
from ebmkit.plugins.mcmc.augment import Augment
from ebmkit.plugins.mcmc.replay import ReplayBuffer
from tests.conftest import RECIPES


def noise(n):
    return torch.full((n, 1), -1.0)


@pytest.mark.parametrize(("batch", "offers", "repeats"), [(1, 200, 200), (10, 1000, 400), (100, 1000, 400)])
def test_reservoir_keeps_every_offer_with_probability_size_over_n(batch, offers, repeats):
    torch.manual_seed(0)
    capacity = offers // 20 - (batch > 1)  # not a whole number of batches: it fills past capacity
    size = -(-capacity // batch) * batch  # as the reference's does: whole batches up to capacity
    counts = torch.zeros(offers)
    for _ in range(repeats):
        buffer = ReplayBuffer(capacity=capacity, policy="reservoir", noise=noise)
        for start in range(0, offers, batch):
            buffer.push(torch.arange(start, start + batch, dtype=torch.float32)[:, None])
        kept = buffer.storage[: buffer.size, 0].long()
        assert buffer.size == size and len(kept.unique()) == size
        counts[kept] += 1
    p = size / offers
    expected = repeats * p
    # Chi-square over the offers (offers - 1 d.o.f.), against its 0.1% critical value.
    dof = offers - 1
    chi2 = ((counts - expected) ** 2 / (repeats * p * (1 - p))).sum()
    assert chi2 < dof + 3.1 * (2 * dof) ** 0.5, chi2
    # The first and the last fifth of the offers are kept equally often.
    fifth = offers // 5
    stderr = (expected * (1 - p) / fifth) ** 0.5
    assert counts[:fifth].mean() == pytest.approx(expected, abs=5 * stderr)
    assert counts[-fifth:].mean() == pytest.approx(expected, abs=5 * stderr)


def test_fifo_keeps_the_newest():
    buffer = ReplayBuffer(capacity=5, policy="fifo", noise=noise)
    for start in range(0, 12, 3):
        buffer.push(torch.arange(start, start + 3, dtype=torch.float32)[:, None])
    assert sorted(buffer.storage[:, 0].tolist()) == [7, 8, 9, 10, 11]
    assert (buffer.size, buffer.offered) == (5, 12)


def test_draw_mixes_replay_and_noise_at_the_reinit_probability():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=100, reinit_prob=0.25, noise=noise)
    data = torch.zeros(100, 1)
    assert torch.all(buffer.draw(10, data[:10]) == -1)  # empty: all noise
    buffer.push(torch.rand(100, 1) + 1)
    x = torch.cat([buffer.draw(100, data) for _ in range(40)])
    assert (x == -1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert torch.all(buffer.draw(101, torch.zeros(101, 1)) == -1)  # fewer stored than asked: all noise


def test_uint8_storage_round_trips_within_a_quantum_without_wrap_around():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=64, uint8=True, reinit_prob=0.0, noise=noise)
    x = torch.rand(64, 3, 4, 4)
    x[0] = 1.0
    x[1] = 0.0
    buffer.push(x)
    assert buffer.storage.dtype == torch.uint8
    assert buffer.storage[0].min() == 255 and buffer.storage[1].max() == 0
    drawn = buffer._decode(buffer.storage, torch.float32)
    assert (drawn - x).abs().max() < 2 / 256
    assert drawn[0].min() > 0.99  # white stays white (the reference's no-transform path inverted it)


def test_on_draw_transition_is_applied_to_buffer_samples_only():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=32, reinit_prob=0.0, on_draw=Augment(preset="cifar10"), noise=lambda n: torch.zeros(n, 3, 8, 8))
    stored = torch.rand(32, 3, 8, 8)
    buffer.push(stored)
    drawn = buffer.draw(32, torch.zeros(32, 3, 8, 8))
    assert drawn.shape == (32, 3, 8, 8)
    assert not any(torch.allclose(d, s) for d in drawn for s in stored)


def test_state_dict_resumes_the_same_chains():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=20, policy="reservoir", noise=noise)
    for _ in range(5):
        buffer.push(torch.randn(8, 2))
    state = buffer.state_dict()
    again = ReplayBuffer(capacity=20, policy="reservoir", noise=noise)
    again.load_state_dict(state)
    torch.manual_seed(1)
    a = buffer.draw(6, torch.zeros(6, 2))
    buffer.push(torch.ones(8, 2))
    torch.manual_seed(1)
    b = again.draw(6, torch.zeros(6, 2))
    again.push(torch.ones(8, 2))
    assert torch.equal(a, b) and torch.equal(buffer.storage, again.storage) and again.offered == 48


def test_a_recipe_can_nest_the_draw_transition(registries):
    recipe = load(RECIPES / "quickstart.toml", ['buffer.on_draw={name = "augment", preset = "celeba"}'], registries)
    spec = recipe.one("buffer")
    built = spec.build(noise=noise)
    assert isinstance(built.on_draw, Augment) and built.on_draw.preset == "celeba"
    with pytest.raises(Exception, match="unknown transition 'augmnt' - did you mean 'augment'"):
        load(RECIPES / "quickstart.toml", ['buffer.on_draw={name = "augmnt"}'], registries)
