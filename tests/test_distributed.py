"""Data parallelism's one promise, checked with two gloo processes on the CPU: with the
gradients averaged across ranks after backward, two ranks with batch b give the parameter
gradient of one process with batch 2b, for a loss with the improved-CD KL term (whose
gradient flows through the sampler, which DistributedDataParallel's reducer cannot do)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ebmkit.distributed import World, average_gradients, mean_over_ranks, world_from_env
from ebmkit.errors import EbmkitError
from tests.conftest import RECIPES

RECIPE = {
    "run": {"seed": 0, "threads": 1},
    "data": {"name": "8gaussians", "size": 64},
    "energy": {"name": "mlp", "hidden": 16, "depth": 2},
    # no noise: the negatives are a function of the chain starts, shared by both set-ups
    "sampler": {"name": "chain", "steps": 3, "transitions": [{"name": "langevin", "step_size": 0.05, "noise_std": 0.0}]},
    "losses": [{"name": "cd"}, {"name": "energy_l2"}, {"name": "kl"}],
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"steps": 1, "batch_size": 8, "log_every": 1, "eval_at_start": False},
}


def gradients_of_one_update(folder, x_pos: torch.Tensor, x0: torch.Tensor, world: World) -> dict[str, torch.Tensor]:
    """The parameter gradients the loop's step hands the optimizer, for these positives and chain starts."""
    from ebmkit.loop import Trainer
    from ebmkit.protocols import TrainBatch
    from ebmkit.recipe import validate
    from ebmkit.run import setup

    recipe = validate({**RECIPE, "train": {**RECIPE["train"], "batch_size": len(x_pos)}}, "distributed")
    run = setup(recipe, Path(folder), live=False)
    run.world = world
    trainer = Trainer(run)
    batch = TrainBatch(run.model, x_pos, None, reference_set=trainer.reference_set)
    result = run.components.sampler.sample(run.model, x0, keep_graph=trainer.graph_steps)
    batch.x_neg, batch.x_neg_graph = result.x, result.x_graph
    total, metrics = trainer.losses(batch)
    captured = {}
    run.state.optimizer.step = lambda: captured.update(
        {name: p.grad.clone() for name, p in run.state.energy.named_parameters()}
    )
    trainer.step(total, batch, metrics)
    run.lock.close()
    return captured


def _rank(rank: int, size: int, port: int, root: str, x_pos, x0, out) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        share = len(x_pos) // size
        part = slice(rank * share, (rank + 1) * share)
        grads = gradients_of_one_update(f"{root}/rank{rank}", x_pos[part], x0[part], World(rank, size))
        metrics = mean_over_ranks({"rank": float(rank)}, World(rank, size), torch.device("cpu"))
        out.put((rank, {k: v.numpy() for k, v in grads.items()}, metrics["rank"]))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_with_batch_b_give_the_gradient_of_one_process_with_batch_2b(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    generator = torch.Generator().manual_seed(1)
    x_pos = torch.randn(16, 2, generator=generator) * 2
    x0 = torch.rand(16, 2, generator=generator) * 8 - 4
    single = gradients_of_one_update(tmp_path / "single", x_pos, x0, World())

    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_rank, args=(r, 2, port, str(tmp_path), x_pos, x0, queue)) for r in range(2)]
    for p in processes:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in processes)
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank, grads, mean_rank in results:
        assert mean_rank == pytest.approx(0.5)  # metrics are averaged over the ranks
        assert set(grads) == set(single)
        for name, value in single.items():
            torch.testing.assert_close(torch.from_numpy(grads[name]), value, rtol=1e-5, atol=1e-7, msg=f"{name} on rank {rank}")
    # and the halves alone differ from the whole: the all-reduce is what makes them equal
    alone = gradients_of_one_update(tmp_path / "half", x_pos[:8], x0[:8], World())
    assert any(not torch.allclose(alone[k], single[k], rtol=1e-3) for k in single)


def test_world_is_read_from_torchrun_environment():
    assert world_from_env({}) == World()
    assert world_from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(1, 4, 1)
    assert World(1, 4).distributed and not World(1, 4).is_main
    with pytest.raises(EbmkitError, match="RANK and WORLD_SIZE"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "x"})


def test_averaging_gradients_is_nothing_in_one_process():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    average_gradients([p], World())
    assert p.grad.tolist() == [2.0, 2.0, 2.0]


def test_a_run_under_torchrun_is_refused_until_it_is_supported(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = run_cli("run", str(RECIPES / "quickstart.toml"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "torchrun" in result.output
    assert not (tmp_path / "run").exists()


def test_ranks_read_disjoint_equal_shares_of_each_epoch():
    from ebmkit.data import DataStream

    dataset = torch.arange(21.0)[:, None]
    streams = [DataStream(dataset, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([s.next_batch()[0] for _ in range(5)]).flatten().tolist() for s in streams]
    assert len(seen[0]) == len(seen[1]) == 10
    assert not set(seen[0]) & set(seen[1])
    whole = DataStream(dataset, 2, seed=3)
    whole.next_batch()
    for rank in range(2):  # the one-process permutation, interleaved: the ranks draw it alike
        assert seen[rank] == whole._order[rank::2][:10]
    with pytest.raises(EbmkitError, match="on each of 4 ranks"):
        DataStream(dataset, 6, seed=0, rank=0, world_size=4)
