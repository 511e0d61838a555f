"""``[train].init_from``: a run that starts from another run's weights (a second training
phase), and the history of runs a checkpoint's weights came through."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebmkit._engine.checkpoint import CheckpointError, energy_record, find_checkpoint, load_weights, read_meta, read_state, run_folder_of
from ebmkit._host.errors import EbmkitError

if TYPE_CHECKING:
    from ebmkit._engine.run import Run


def phase_record(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """One entry of a history: the run a checkpoint belongs to, the checkpoint, its step and recipe."""
    return {"run": str(run_folder_of(folder).resolve()), "checkpoint": folder.name, "step": meta["step"], "recipe": meta["recipe"]}


def history_of(folder: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run the weights of a checkpoint came through, earliest first, its own run last."""
    return [*meta.get("history", []), phase_record(folder, meta)]


def start_from(run: Run) -> None:
    """Put the latest weights of ``[train].init_from`` into ``run`` at step 0: the energy, the
    EMA (from the source's EMA when it kept one), and the optimizer's moments when both runs
    use the same optimizer. This run's own settings (learning rate, EMA decay) apply."""
    source = run.recipe.train.init_from
    try:
        folder = find_checkpoint(source)
    except CheckpointError as exc:
        raise EbmkitError(f"[train].init_from = {source!r}: {exc}") from None
    meta = read_meta(folder)
    _refuse_another_energy(run, folder, meta)
    load_weights(run.state.energy, folder / "energy.safetensors")
    ema = run.state.ema
    if ema is not None:
        kept = folder / "ema.safetensors"
        load_weights(ema.module, kept if kept.exists() else folder / "energy.safetensors")
    moments = _carry_optimizer(run, folder, meta)
    run.history = history_of(folder, meta)
    message = f"started from {folder} (step {meta['step']}): its weights{', EMA' if ema is not None else ''}{moments}"
    run.console.print(message, soft_wrap=True)
    run.event(0, {"event": "init_from", "message": message, "checkpoint": str(folder.resolve())})


def _refuse_another_energy(run: Run, folder: Path, meta: dict[str, Any]) -> None:
    theirs, mine = meta.get("energy", {}), energy_record(run)
    differ = [key for key in ("name", "params", "data_shape", "num_classes") if theirs.get(key) != mine[key]]
    if differ:
        shown = "; ".join(f"{key}: {theirs.get(key)!r} there, {mine[key]!r} here" for key in differ)
        raise EbmkitError(f"[train].init_from: {folder} holds another energy than this recipe builds ({shown})")


def _carry_optimizer(run: Run, folder: Path, meta: dict[str, Any]) -> str:
    """Load the source's optimizer state (its moments), keeping this recipe's hyperparameters."""
    theirs = (meta.get("recipe", {}).get("optim") or {}).get("name")
    ours = run.recipe.one("optim").entry.name
    if theirs != ours:
        return f"; not its optimizer's state ({theirs}, this run uses {ours})"
    state = read_state(folder, run.device, 0, int(meta.get("world_size", 1)))["optimizer"]
    optimizer = run.state.optimizer
    own_groups = optimizer.state_dict()["param_groups"]
    groups = [{**saved, **{k: v for k, v in own.items() if k != "params"}} for saved, own in zip(state["param_groups"], own_groups, strict=True)]
    optimizer.load_state_dict({"state": state["state"], "param_groups": groups})
    return f" and its optimizer's moments ({ours})"
