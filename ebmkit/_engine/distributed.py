"""Data-parallel training on torch.distributed (launched by torchrun): who this process is, and
the two collective operations the loop needs.

The energy is not wrapped in DistributedDataParallel: DDP's reducer does not support the
``torch.autograd.grad`` calls of samplers and of the improved-CD KL term. Each rank samples
its own chains and computes its own loss on its share of the batch; after ``backward`` the
gradients are averaged across ranks with one all-reduce, as the Improved-CD reference does
(``average_gradients``). With every loss a mean over the batch and equal shares, the averaged
gradient is exactly the gradient of the whole batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import attrs
import torch

from ebmkit._host.errors import EbmkitError


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


def join(world: World, device: torch.device) -> None:
    """Join the process group: NCCL for CUDA devices, gloo otherwise."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: World) -> None:
    """Replace every gradient by its mean over the ranks (one all-reduce of all of them)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
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
    dist.all_reduce(values)
    values /= world.size
    return dict(zip(keys, values.tolist(), strict=True))


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def from_main(value: str, world: World) -> str:
    """Rank 0's ``value`` on every rank (e.g. the default run folder, which names a time)."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)  # between the ranks of this run only: a string
    return box[0]


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (ranks must take the same branch)."""
    if not world.distributed:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


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
