"""Data parallelism's one promise, checked with two gloo processes on the CPU: with the
gradients averaged across ranks after backward, two ranks with batch b give the parameter
gradient of one process with batch 2b, for a loss with the improved-CD KL term (whose
gradient flows through the sampler, which DistributedDataParallel's reducer cannot do)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ebmkit._engine.distributed import World, average_gradients, mean_over_ranks, world_from_env
from ebmkit._host.errors import EbmkitError
from tests.conftest import RECIPES, ROOT, load_benchmark

#: a torchrun agent's live workers, {rank: pid}, as the soak script finds them
workers = load_benchmark("soak_resume").workers

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
    from ebmkit._engine.loop import Trainer
    from ebmkit._host.protocols import TrainBatch
    from ebmkit._recipes.recipe import validate
    from ebmkit._engine.run import setup

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


def torchrun(*args: str, nproc: int = 2, timeout: int = 240, launcher: tuple[str, ...] = ("--standalone",),
             env: dict | None = None, popen: bool = False):
    """``torchrun LAUNCHER --nproc_per_node=nproc -m ebmkit run ARGS``, one thread per process
    (``env``: the whole environment, by default this process's)."""
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, f"--nproc_per_node={nproc}", "-m", "ebmkit", "run", *args]
    env = {**(env or os.environ), "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


SHORT = ["--set", "train.checkpoint_every=5", "--set", "evaluators=[]", "--set", "run.threads=1"]


def wait_for(condition, agents, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert all(a.poll() is None for a in agents), [a.stdout.read()[-3000:] for a in agents if a.poll() is not None]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")


@needs_proc
def test_torchrun_restarts_a_killed_worker_group_which_resumes_bitwise_where_it_stopped(tmp_path, run_cli):
    from safetensors.torch import load_file

    straight, elastic = tmp_path / "straight", tmp_path / "elastic"
    steps = ["--set", "train.steps=30"]
    done = torchrun(str(RECIPES / "quickstart.toml"), *steps, *SHORT, "--out", str(straight))
    assert done.returncode == 0, done.stderr[-3000:]
    # The same command line a requeued job or torchrun's restart runs again: --resume auto.
    agent = torchrun(str(RECIPES / "quickstart.toml"), *steps, *SHORT, "--out", str(elastic), "--resume", "auto",
                     launcher=("--standalone", "--max-restarts=3"), popen=True)
    checkpoint = elastic / "checkpoints" / "step_0000010"
    wait_for(checkpoint.exists, [agent])
    os.kill(workers(agent)[1], signal.SIGKILL)
    output, _ = agent.communicate(timeout=240)
    assert agent.returncode == 0, output[-3000:]
    assert "rank 1 died or stopped answering" in output
    assert re.search(r"resuming from step (10|15|20|25) ", output), output[-3000:]  # the latest checkpoint when it was killed
    assert (checkpoint / "rank1.state.safetensors").exists()
    for name in ("energy.safetensors", "ema.safetensors"):
        a, b = (load_file(str(run / "checkpoints" / "step_0000030" / name)) for run in (straight, elastic))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}:{key}")
    assert json.loads((elastic / "checkpoints" / "step_0000030" / "meta.json").read_text())["world_size"] == 2
    # rank 0 alone logs, as one process does: the update's line and the run's closing line, once each
    for run in (straight, elastic):
        assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [30, 30]
    # A checkpoint of two ranks resumes only with two.
    result = run_cli("run", "--resume", str(elastic), "--set", "train.steps=40")
    assert result.exit_code == 2 and "written by 2 rank(s)" in result.output and "--nproc 2" in result.output


@needs_proc
def test_a_rank_killed_on_another_node_stops_this_one_in_bounded_time_naming_it(tmp_path):
    """Two torchrun agents (two "nodes") on this machine, one worker each; the worker of one is
    killed, and the other exits non-zero well within [run].collective_timeout_s, naming it."""
    port = _free_port()
    args = [str(RECIPES / "quickstart.toml"), "--set", "train.steps=100000", *SHORT, "--set", "run.collective_timeout_s=60",
            "--out", str(tmp_path / "run")]
    nodes = [
        torchrun(*args, nproc=1, popen=True, launcher=("--nnodes=2", "--max-restarts=0", "--rdzv_backend=c10d",
                 f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes", f"--rdzv_conf=is_host={int(host)}"))
        for host in (True, False)
    ]
    try:
        wait_for((tmp_path / "run" / "checkpoints" / "step_0000005").exists, nodes)
        (dead, pid), = workers(nodes[1]).items()
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        output, _ = nodes[0].communicate(timeout=60)
        took = time.monotonic() - killed
    finally:
        for node in nodes:
            node.kill()
            node.wait()
    assert nodes[0].returncode not in (0, None) and took < 60, took
    assert f"rank {dead} died or stopped answering without a word" in output, output[-3000:]
    assert f"rank {1 - dead} of 2 stopped" in output


NAN_LOSS_PLUGIN = """
import attrs
from ebmkit import LossOutput, Needs, hookimpl

@attrs.define
class NanAt:
    at: int = 5
    calls: int = attrs.field(default=0, init=False)
    needs = Needs(negatives=False)

    def __call__(self, batch):
        self.calls += 1
        return LossOutput(batch.e_pos.mean() * 0 + (float("nan") if self.calls == self.at else 0.0))

@hookimpl
def ebmkit_register_losses(register):
    register("nan_at", NanAt)
"""


def test_after_a_rollback_the_two_ranks_draw_different_noise(tmp_path):
    from safetensors.torch import load_file

    from tests.conftest import make_distribution, plugin_env

    (tmp_path / "site").mkdir()
    make_distribution(tmp_path / "site", "nan-loss", "nan_loss", NAN_LOSS_PLUGIN)
    done = torchrun(str(RECIPES / "quickstart.toml"), "--set", "train.steps=6", *SHORT, "--set", "train.checkpoint_every=2",
                    "--set", 'losses=[{name = "cd"}, {name = "nan_at", at = 4}]', "--set", 'train.on_divergence.action="rollback"',
                    "--out", str(tmp_path / "run"), env=plugin_env(tmp_path / "site"))
    assert done.returncode == 0, done.stderr[-3000:]
    retry = tmp_path / "run" / "checkpoints" / "step_0000002-retry1"  # written right after the rollback's reseeding
    states = [load_file(str(retry / name)) for name in ("state.safetensors", "rank1.state.safetensors")]
    noise = []
    for state in states:
        generator = torch.Generator()
        generator.set_state(state["state.rng.cpu"])
        noise.append(torch.randn(5, generator=generator))
    assert not torch.equal(noise[0], noise[1])
    # and neither rank draws what it drew before the rollback, nor what the other did
    before = [load_file(str(tmp_path / "run" / "checkpoints" / "step_0000002" / name))["state.rng.cpu"]
              for name in ("state.safetensors", "rank1.state.safetensors")]
    assert not torch.equal(before[0], states[0]["state.rng.cpu"]) and not torch.equal(before[1], states[1]["state.rng.cpu"])
    assert not torch.equal(before[1], states[0]["state.rng.cpu"])


def test_two_ranks_of_batch_b_learn_like_one_process_of_batch_2b(tmp_path):
    """The same recipe, 100 updates: two ranks of 256 against one process of 512. The runs
    differ in their random streams and buffers (one buffer per rank), so their curves are
    compared on the exact grid KL at the end: within 0.03 nats of each other, after both fell
    by more than 0.25 nats from 1.32 (measured: 0.989 and 0.994)."""
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    evaluate = ["--set", "train.steps=100", "--set", "run.threads=1", "--set", "evaluators.0.plot=false"]
    two = torchrun(str(RECIPES / "quickstart.toml"), *evaluate, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    train(load(RECIPES / "quickstart.toml", ["train.steps=100", "train.batch_size=512", "run.threads=1", "evaluators.0.plot=false"]),
          tmp_path / "one", live=False)

    def kl(run):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["density2d/grid_kl"] for r in rows if "density2d/grid_kl" in r}

    two_kl, one_kl = kl("two"), kl("one")
    assert two_kl[0] == pytest.approx(one_kl[0])  # the same initial weights
    assert abs(two_kl[100] - one_kl[100]) < 0.03, (two_kl, one_kl)
    assert two_kl[100] < two_kl[0] - 0.25 and one_kl[100] < one_kl[0] - 0.25  # and both learn


def test_ranks_read_disjoint_equal_shares_of_each_epoch():
    from ebmkit._host.data import DataStream

    dataset = torch.arange(21.0)[:, None]
    streams = [DataStream(dataset, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([s.next_batch()[0] for _ in range(5)]).flatten().tolist() for s in streams]
    assert len(seen[0]) == len(seen[1]) == 10
    assert not set(seen[0]) & set(seen[1])
    whole = DataStream(dataset, 2, seed=3)
    whole.next_batch()
    for rank in range(2):  # the one-process permutation, interleaved: the ranks draw it alike
        assert seen[rank] == whole._order[rank::2][:10].tolist()
    with pytest.raises(EbmkitError, match="on each of 4 ranks"):
        DataStream(dataset, 6, seed=0, rank=0, world_size=4)


def test_a_recipe_written_for_eight_ranks_warns_when_run_on_one(tmp_path):
    import io

    from rich.console import Console

    from ebmkit._recipes.recipe import validate
    from ebmkit._engine.run import setup

    recipe = validate({**RECIPE, "run": {**RECIPE["run"], "world_size": 8}}, "eight")
    out = io.StringIO()
    run = setup(recipe, tmp_path / "run", console=Console(file=out, width=300), live=False)
    run.lock.close()
    assert "written for 8 data-parallel ranks" in out.getvalue() and "effective batch is 8 instead of 64" in out.getvalue()


def test_each_torchrun_attempt_keeps_its_keys_apart_in_the_agents_store():
    """torchrun's agent keeps one store across restarts: a restarted group must not read the
    keys (a dead rank's address) of the attempt before it."""
    from datetime import timedelta

    import torch.distributed as dist

    from ebmkit._engine.distributed import _attempt_store

    server = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=timedelta(seconds=10))
    env = {"TORCHELASTIC_USE_AGENT_STORE": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(server.port)}
    first = _attempt_store(World(0, 2), timedelta(seconds=10), env | {"TORCHELASTIC_RESTART_COUNT": "0"})
    second = _attempt_store(World(0, 2), timedelta(seconds=10), env | {"TORCHELASTIC_RESTART_COUNT": "1"})
    first.set("rank_0", "dead address")
    assert not second.check(["rank_0"]) and first.check(["rank_0"])
    assert server.get("ebmkit/attempt_0/rank_0") == b"dead address"
    assert _attempt_store(World(0, 2), None, {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}) is None  # not under torchrun's agent
