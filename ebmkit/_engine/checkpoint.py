"""Checkpoints: written atomically, read without ever unpickling, and ``ebmkit.load``.

A checkpoint is a folder, ``checkpoints/step_NNNNNNN`` (``step_NNNNNNN-retryK`` when it was
written again at the same step after the K-th divergence rollback)::

    energy.safetensors   the weights (safetensors.torch.save_model)
    ema.safetensors      the EMA weights, when the run keeps an EMA
    state.safetensors    every other tensor of the run state: optimizer moments, the buffer,
                         random-number states, the data order's generator
    state.json           the rest of the run state; each tensor is {"$tensor": key}
    meta.json            format, step, retries, the energy's full record and the resolved recipe

It is written into ``checkpoints/.tmp-...``, every file and the folder are fsynced, and the
folder is renamed into place: a kill at any instant leaves either the previous complete
checkpoint or the new complete one. See docs/resume.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors
import safetensors.torch
import torch

from ebmkit._engine.atomic import fsync_path
from ebmkit._host.errors import EbmkitError, TrainingDiverged

if TYPE_CHECKING:
    from ebmkit._engine.run import Run

#: The format written; ``ebmkit.load`` also reads format 2 (weights only, no run state).
FORMAT = 3
READABLE_FORMATS = (2, 3)
_NAME = re.compile(r"^step_(\d+)(?:-retry(\d+))?$")
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


class CheckpointError(EbmkitError):
    """A checkpoint that cannot be read: missing, of an unknown format, or not safetensors/JSON."""


class PluginVersionWarning(UserWarning):
    """A checkpoint was made with another version of the plugin that supplies its energy."""


# -- the run state as tensors plus JSON ---------------------------------------------------
def split_state(state: Any, where: str = "state") -> tuple[Any, dict[str, torch.Tensor]]:
    """``state`` as JSON-ready data, with every tensor moved into a flat ``{key: tensor}``.

    Tuples and dicts with non-string keys (an optimizer's ``{0: {...}}``) are tagged so they
    come back as they were.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            key = path if path not in tensors else f"{path}#{len(tensors)}"  # keys may hold dots themselves
            tensors[key] = value.detach().to("cpu", copy=True).contiguous()
            return {"$tensor": key, "device": value.device.type}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {k: encode(v, f"{path}.{k}") for k, v in value.items()}
            return {"$items": [[k, encode(v, f"{path}.{k}")] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$tuple": [encode(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [encode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise EbmkitError(
            f"{path} is a {type(value).__name__}, which a checkpoint cannot hold: a component's "
            "state_dict() may contain only tensors, numbers, strings, booleans, None, lists, tuples and dicts"
        )

    return encode(state, where), tensors


def join_state(data: Any, tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> Any:
    """The inverse of :func:`split_state`; tensors that lived on a GPU go to ``device``."""
    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if "$tensor" in value:
                tensor = tensors[value["$tensor"]]
                return tensor if value.get("device", "cpu") == "cpu" else tensor.to(device)
            if "$items" in value:
                return {k: decode(v) for k, v in value["$items"]}
            if "$tuple" in value:
                return tuple(decode(v) for v in value["$tuple"])
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return decode(data)


# -- writing ------------------------------------------------------------------------------
def checkpoint_name(step: int, retries: int = 0) -> str:
    return f"step_{step:07d}" + (f"-retry{retries}" if retries else "")


def check_finite_weights(state: Any) -> None:
    """Raise :class:`TrainingDiverged` unless the weights and the EMA weights of a run state
    are finite (a finite gradient can still overflow them)."""
    for label, module in (("weights", state.energy), ("EMA weights", state.ema.module if state.ema else None)):
        if module is not None and not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            raise TrainingDiverged(f"training diverged at step {state.step}: the {label} are not finite", state.step)


def save_checkpoint(run: Run, before_rename: Any = None, replaceable: bool = False) -> Path:
    """Write the whole run state as ``checkpoints/step_NNNNNNN``, atomically.

    A checkpoint of the same step and rollback count holds this very state (no later one
    survives a rollback or a resume), so when it exists nothing is written again.

    :param before_rename: ``f(folder)``, called with the temporary folder once ebmkit's files
        are in it: files it adds are part of the atomic checkpoint.
    :param replaceable: the next checkpoint replaces this one (``prune_checkpoints`` removes it
        once a later one exists): a checkpoint written because time passed, not by the schedule.
    :raises TrainingDiverged: the weights are not finite; nothing is written.
    """
    state, world = run.state, run.world
    root = run.out_dir / "checkpoints"
    final = root / checkpoint_name(state.step, state.retries)
    if world.distributed:
        return _save_every_rank(run, root, final, before_rename, replaceable)
    if final.exists():
        return final
    check_finite_weights(state)
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write(run, temporary, before_rename, replaceable)
    except OSError as exc:  # a full disk, a vanished mount: the previous checkpoint stays the latest
        shutil.rmtree(temporary, ignore_errors=True)
        raise CheckpointError(f"cannot write the checkpoint {final}: {exc.strerror or exc}") from None
    os.rename(temporary, final)
    fsync_path(root)
    return final


def _save_every_rank(run: Run, root: Path, final: Path, before_rename: Any, replaceable: bool) -> Path:
    """A data-parallel checkpoint: rank 0's files as in one process, plus each other rank's own
    run state (its chains, buffer, random streams, data position) as ``rank<r>.state.*``.
    Rank 0 renames the folder once every rank has written (a shared filesystem is assumed)."""
    from ebmkit._engine.distributed import barrier

    world = run.world
    barrier(world)  # nobody writes between here and every rank's look at the folder
    done = final.exists()
    check_finite_weights(run.state)
    temporary = root / f".tmp-{final.name}-ranks"
    if world.is_main and not done:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
    barrier(world)
    if not world.is_main and not done:
        _write_rank_state(run, temporary)
    barrier(world)
    if world.is_main and not done:
        _write(run, temporary, before_rename, replaceable)
        os.rename(temporary, final)
        fsync_path(root)
    barrier(world)
    return final


def _write_rank_state(run: Run, folder: Path) -> None:
    for path in _write_state(run, folder, f"rank{run.world.rank}.state"):
        fsync_path(path)


def _write_state(run: Run, folder: Path, stem: str) -> tuple[Path, Path]:
    """The run state without the weights (``stem``.safetensors and ``stem``.json); their paths."""
    data, tensors = split_state(run.state.state_dict(modules=False))
    tensor_file, json_file = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    safetensors.torch.save_file(tensors, str(tensor_file), metadata={"step": str(run.state.step)})
    json_file.write_text(json.dumps(data))
    return tensor_file, json_file


def energy_record(run: Run) -> dict[str, Any]:
    """What a checkpoint records of the energy, to rebuild it (``ebmkit.load``): its plugin record
    (name, parameters), the data's sample shape and number of classes, what the labels mean and
    the data's domain."""
    dataset = run.components.dataset
    energy = {**run.recipe.one("energy").record(), "data_shape": list(dataset.sample_shape), "num_classes": dataset.num_classes}
    conditioning = getattr(dataset, "conditioning", None) if dataset.num_classes else None
    energy["conditioning"] = conditioning.to_record() if conditioning is not None else None
    energy["domain"] = list(dataset.domain) if dataset.domain is not None else None
    return energy


def _write(run: Run, temporary: Path, before_rename: Any, replaceable: bool = False) -> None:
    """Every file of a checkpoint into ``temporary``, each flushed to disk."""
    state = run.state
    temporary.mkdir(exist_ok=run.world.distributed)  # the other ranks' files may be in it already
    metadata = {"step": str(state.step)}
    safetensors.torch.save_model(state.energy, str(temporary / "energy.safetensors"), metadata=metadata)
    if state.ema is not None:
        safetensors.torch.save_model(state.ema.module, str(temporary / "ema.safetensors"), metadata=metadata)
    _write_state(run, temporary, "state")
    meta = {"format": FORMAT, "step": state.step, "retries": state.retries, "energy": energy_record(run), "recipe": run.recipe.resolved(),
            "world_size": run.world.size, "replaceable": replaceable, "history": run.history}
    (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
    if before_rename is not None:
        before_rename(temporary)

    for path in temporary.iterdir():
        fsync_path(path)
    fsync_path(temporary)


def prune_checkpoints(run_dir: Path, keep: int | None) -> None:
    """Remove all but the latest ``keep`` checkpoints, the replaceable ones a later one replaced,
    and the temporary folders a kill left behind."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return
    for leftover in root.glob(".tmp-*"):
        if not leftover.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)
    found = list_checkpoints(run_dir)
    # (a replaceable checkpoint goes as soon as a later one lands: only the last few can be one)
    replaced = [folder for folder in found[-4:-1] if _is_replaceable(folder)]
    kept = [folder for folder in found if folder not in replaced]
    for old in replaced + (kept[:-keep] if keep is not None else []):
        # Renamed first, so a kill during the removal never leaves a half-deleted checkpoint in place.
        doomed = root / f".tmp-removing-{old.name}"
        os.rename(old, doomed)
        shutil.rmtree(doomed)


def _is_replaceable(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("replaceable"))
    except (OSError, ValueError, AttributeError):  # a damaged checkpoint is reported where it is read, not here
        return False


# -- finding and reading ------------------------------------------------------------------
def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run folder's complete checkpoints, oldest first (temporary folders are never listed)."""
    root = Path(run_dir) / "checkpoints"
    found = []
    for folder in root.iterdir() if root.is_dir() else ():
        match = _NAME.match(folder.name)
        if match and (folder / "meta.json").is_file():
            found.append(((int(match[1]), int(match[2] or 0)), folder))
    return [folder for _, folder in sorted(found)]


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder: ``path`` itself, or the latest one of a run folder."""
    path = Path(path)
    if path.is_file():
        kind = "a pickle (the format of torch.save)" if _looks_pickled(path) else "a file"
        raise CheckpointError(
            f"{path} is {kind}, not a checkpoint folder: ebmkit reads only its own checkpoints "
            "(safetensors and JSON) and never unpickles a file"
        )
    if (path / "meta.json").is_file():
        return path
    candidates = list_checkpoints(path)
    if not candidates:
        if not path.exists():
            raise CheckpointError(f"no such run or checkpoint folder: {path}")
        raise CheckpointError(f"no checkpoint at {path}: expected a run folder (with checkpoints/step_*) or a checkpoint folder")
    return candidates[-1]


def read_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a checkpoint, its format checked."""
    meta = _read_json(folder / "meta.json")
    version = meta.get("format") if isinstance(meta, dict) else None
    if version not in READABLE_FORMATS:
        raise CheckpointError(
            f"{folder / 'meta.json'} has checkpoint format {version!r}; this ebmkit reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))} (a newer ebmkit may have written it)"
        )
    return meta


def read_state(folder: Path, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """The run state saved in a checkpoint (without the energy's and EMA's weights); in a
    data-parallel run, rank ``rank``'s own."""
    meta = read_meta(folder)
    if meta["format"] < 3:
        raise CheckpointError(f"{folder} has checkpoint format {meta['format']}: weights only, no run state to resume from")
    saved = int(meta.get("world_size", 1))
    if saved != world_size:
        raise CheckpointError(
            f"{folder} was written by {saved} rank(s) and this run has {world_size}: each rank resumes its own chains, "
            f"buffer and random streams, so resume with the same number of processes (ebmkit run --nproc {saved} --resume ...)"
        )
    stem = "state" if rank == 0 else f"rank{rank}.state"
    return join_state(_read_json(folder / f"{stem}.json"), read_tensors(folder / f"{stem}.safetensors"), device)


def restore_checkpoint(run: Run, folder: Path) -> None:
    """Put the run state saved in ``folder`` into ``run.state``: the run continues exactly
    as the one that wrote it."""
    load_weights(run.state.energy, folder / "energy.safetensors")
    run.history = list(read_meta(folder).get("history", []))
    if run.state.ema is not None:
        load_weights(run.state.ema.module, folder / "ema.safetensors")
    try:
        state = read_state(folder, run.device, run.world.rank, run.world.size)
        missing = sorted(set(run.state.components) - set(state["components"]))
        if missing:
            raise CheckpointError(f"{folder} holds no state for {', '.join(missing)}: it was written by a different recipe")
        run.state.load_state_dict(state)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{folder} is damaged or does not fit this run: {type(exc).__name__}: {exc}") from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle above all) is refused unread."""
    _check_safetensors(path)
    try:
        return safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} cannot be read as safetensors: {exc}") from None


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file written by ``save_model`` into ``module``, strictly."""
    _check_safetensors(path)
    try:
        missing, unexpected = safetensors.torch.load_model(module, str(path), strict=False)
    except (safetensors.SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} cannot be read as safetensors: {exc}") from None
    except RuntimeError as exc:  # a shape mismatch
        raise CheckpointError(f"{path} does not fit the energy: {exc}") from None
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the energy: missing {missing}, unexpected {unexpected}")


def _looks_pickled(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04" or path.suffix in _PICKLE_SUFFIXES


def _check_safetensors(path: Path) -> None:
    """A safetensors file starts with an 8-byte header length and a JSON header; a pickle
    (``torch.save``) starts with a protocol byte or a zip signature. Nothing is deserialised here."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete")
    with path.open("rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if len(head) < 9 or head[8:9] != b"{" or not 0 < header <= size - 8:
        what = "a pickle (the format of torch.save)" if _looks_pickled(path) else "not a safetensors file"
        raise CheckpointError(f"{path} is {what}; ebmkit reads checkpoints only as safetensors and never unpickles")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint folder ``RUN/checkpoints/step_N`` belongs to (itself when it is not in one)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint
