"""Data-parallel training on torch.distributed (launched by torchrun): who this process is, the
collective operations the loop needs, and what a rank does when another is lost.

The energy is not wrapped in DistributedDataParallel: DDP's reducer does not support the
``torch.autograd.grad`` calls of samplers and of the improved-CD KL term. Each rank samples
its own chains and computes its own loss on its share of the batch; after ``backward`` the
gradients are averaged across ranks with one all-reduce, as the Improved-CD reference does
(``average_gradients``). With every loss a mean over the batch and equal shares, the averaged
gradient is exactly the gradient of the whole batch.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta

import attrs
import torch

from ebmkit._host.errors import EbmkitError, RankLost

#: How long a rank that lost the others waits for their last words before it names the silent ones.
LAST_WORDS_WAIT_S = 3.0
_LAST_WORDS = "ebmkit/last_words/"
#: The last words of a rank that did not fail itself but lost the others (it names no culprit).
_LOST_THE_OTHERS = "lost the others"


@attrs.frozen
class World:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    try:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError) as exc:
        raise EbmkitError(f"torchrun's environment is incomplete or malformed ({exc}): RANK and WORLD_SIZE must be integers") from None


def join(world: World, device: torch.device, timeout_s: float | None = None) -> None:
    """Join the process group: NCCL for CUDA devices, gloo otherwise.

    :param timeout_s: how long any collective may wait for the other ranks (``[run].collective_timeout_s``):
        a rank that hangs stops the others after this, never later.
    """
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    timeout = timedelta(seconds=timeout_s) if timeout_s is not None else None
    with collective(world, "joining the other ranks"):
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size, timeout=timeout,
                                store=_attempt_store(world, timeout))


def _attempt_store(world: World, timeout: timedelta | None, environ: Mapping[str, str] | None = None):
    """This attempt's own view of torchrun's store, or None (torch then reads ``MASTER_ADDR``).

    torchrun's agent keeps one store for all the attempts of a run, so after a restart the
    process group's keys of the attempt before are still there: a restarted rank can read a dead
    rank's address and wait for it forever (seen with torch 2.14 and ``--max-restarts``). Each
    attempt's keys therefore go under its own prefix, as torch's older launchers did.
    """
    env = os.environ if environ is None else environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
        return None
    import torch.distributed as dist

    client = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world.size, is_master=False,
                           timeout=timeout or timedelta(minutes=30))
    return dist.PrefixStore(f"ebmkit/attempt_{env.get('TORCHELASTIC_RESTART_COUNT', '0')}", client)


@contextlib.contextmanager
def collective(world: World, what: str) -> Iterator[None]:
    """Turn the failure of a collective operation (a rank died, raised, or did not answer within
    the timeout) into :class:`RankLost`, naming the ranks that were lost."""
    try:
        yield
    except RuntimeError as exc:  # gloo's and NCCL's errors (DistBackendError is one)
        if not world.distributed:
            raise
        say_last_words(world, f"{_LOST_THE_OTHERS} while {what}")
        raise RankLost(f"rank {world.rank} of {world.size} stopped: {lost_ranks(world)}, while {what} "
                       f"({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _store():
    """The store every rank of the run reaches (torchrun's), or None."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:  # not initialised, or a torch without it: the message names no rank
        return None


def say_last_words(world: World, words: str) -> None:
    """Leave ``words`` where the other ranks look when they lose this one (a rank that raises,
    or that lost the others, says why before it exits; a killed one says nothing)."""
    store = _store()
    if store is None:
        return
    with contextlib.suppress(Exception):  # the store's host may be gone too
        store.set_timeout(timedelta(seconds=LAST_WORDS_WAIT_S))
        store.set(f"{_LAST_WORDS}{world.rank}", words[:500])


def lost_ranks(world: World, wait_s: float = LAST_WORDS_WAIT_S) -> str:
    """Which ranks were lost and how: their last words, or none (killed, hung, or their machine lost)."""
    store = _store()
    others = [rank for rank in range(world.size) if rank != world.rank]
    if store is None:
        return "another rank died, raised or stopped answering"
    words: dict[int, str] = {}
    deadline = time.monotonic() + wait_s
    try:
        while True:
            for rank in others:
                if rank not in words and store.check([f"{_LAST_WORDS}{rank}"]):
                    words[rank] = store.get(f"{_LAST_WORDS}{rank}").decode(errors="replace")
            if len(words) == len(others) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    except Exception:  # the store's host is gone: rank 0 hosts it unless torchrun's agent does
        return "rank 0 died or stopped answering (the rendezvous store it may hold no longer answers)"
    silent = [rank for rank in others if rank not in words]
    raised = [f"rank {rank} {text}" for rank, text in words.items() if not text.startswith(_LOST_THE_OTHERS)]
    parts = [*raised]
    if silent:
        parts.append(f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))} died or stopped answering "
                     "without a word (killed, hung, or its machine lost)")
    return "; ".join(parts) or "every other rank lost the others too"


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: World) -> None:
    """Replace every gradient by its mean over the ranks (one all-reduce of all of them)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    with collective(world, "averaging the gradients"):
        dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(metrics: Mapping[str, float], world: World, device: torch.device) -> dict[str, float]:
    """Each metric averaged over the ranks (every rank must call it with the same keys)."""
    if not world.distributed or not metrics:
        return dict(metrics)
    import torch.distributed as dist

    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=device)
    with collective(world, "averaging the metrics"):
        dist.all_reduce(values)
    values /= world.size
    return dict(zip(keys, values.tolist(), strict=True))


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        with collective(world, "waiting for the other ranks"):
            dist.barrier()


def from_main(value: str, world: World) -> str:
    """Rank 0's ``value`` on every rank (e.g. the default run folder, which names a time)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    with collective(world, "reading rank 0's run folder"):
        dist.broadcast_object_list(box, src=0)  # between the ranks of this run only: a string
    return box[0]


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (ranks must take the same branch)."""
    return any_ranks([flag], world, device)[0]


def any_ranks(flags: Sequence[bool], world: World, device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on any, in one collective operation."""
    if not world.distributed:
        return list(flags)
    import torch.distributed as dist

    values = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=device)
    with collective(world, "agreeing with the other ranks"):
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


class MainRankHooks:
    """The plugins' lifecycle hooks as rank 0 calls them; on the other ranks they do nothing
    (logging, evaluation and checkpoint files are rank 0's), except ``ebmkit_wrap_energy``,
    which every rank needs alike."""

    EVERY_RANK = ("ebmkit_wrap_energy",)

    def __init__(self, hook, world: World):
        self._hook, self._world = hook, world

    def __getattr__(self, name: str):
        if self._world.is_main or name in self.EVERY_RANK:
            return getattr(self._hook, name)
        return _Silent()


class _Silent:
    """A hook on a rank that does not call it: no implementation, nothing returned."""

    def __call__(self, **kwargs) -> list:
        return []

    def get_hookimpls(self) -> list:
        return []
