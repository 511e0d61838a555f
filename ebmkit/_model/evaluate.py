"""``ebmkit eval``: run evaluators on a finished run or a checkpoint, writing into its run folder.

The run's own recipe (recorded in the checkpoint) rebuilds the data, the sampler and the
energy; the checkpoint's weights (EMA by default) are loaded into it; each evaluator then
runs as it would at the end of training, with the checkpoint's step. Figures go to the run
folder, metrics are appended to its ``metrics.jsonl`` (marked ``"source": "ebmkit eval"``) and
also written to ``eval_<evaluator>_step<N>.json``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ebmkit._host.errors import EbmkitError, RecipeError, RecipeProblem
from ebmkit._host.registry import Registries
from ebmkit._host.installed import default_registries


def evaluator_tables(names: Sequence[str], overrides: Sequence[str]) -> list[dict[str, Any]]:
    """``[[evaluators]]`` tables for ``names``; ``--set PARAM=VALUE`` sets a parameter of every
    one of them, ``--set NAME.PARAM=VALUE`` of the one called NAME."""
    from ebmkit._recipes.recipe import apply_overrides

    if not names:
        raise EbmkitError("name an evaluator: ebmkit eval RUN_DIR --evaluator NAME (ebmkit list evaluators shows them)")
    tables = {name: {"name": name} for name in names}
    problems: list[RecipeProblem] = []
    for text in overrides:
        first = text.partition("=")[0].strip().partition(".")[0]
        if first in tables and "." in text.partition("=")[0]:
            problems += apply_overrides(tables[first], [text.strip()[len(first) + 1:]])
        else:
            for table in tables.values():
                problems += apply_overrides(table, [text])
    if problems:
        raise RecipeError("ebmkit eval", problems)
    return list(tables.values())


def evaluate(
    path: str | Path, names: Sequence[str], overrides: Sequence[str] = (), *, ema: bool = True,
    device: str | None = None, console: Any = None, registries: Registries | None = None,
) -> dict[str, Any]:
    """Run the evaluators ``names`` on the checkpoint at ``path`` (a run folder: its latest).

    :return: the metrics, prefixed with each evaluator's name as in training.
    """
    from ebmkit._recipes.build import build
    from ebmkit._engine.checkpoint import run_folder_of
    from ebmkit._model.load import load
    from ebmkit._recipes.recipe import validate
    from ebmkit._engine.run import lock_run_folder

    registries = registries or default_registries()
    folder, meta, data = recorded_recipe(path)
    data["evaluators"] = evaluator_tables(names, overrides)
    if device is not None:
        data.setdefault("run", {})["device"] = device
    recipe = validate(data, f"the recipe of {folder}", registries)
    components = build(recipe, recipe.run.device)
    energy = load(folder, ema=ema, device=recipe.run.device, registries=registries)
    restore_buffer(components, folder, meta, recipe.run.device)
    has_ema = ema and (folder / "ema.safetensors").is_file()
    run_dir = run_folder_of(folder)
    step = int(meta.get("step", 0))
    lock = lock_run_folder(run_dir)
    try:
        return _run(components, energy, run_dir, step, has_ema, console)
    finally:
        if lock is not None:
            lock.close()


def recorded_recipe(path: str | Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The checkpoint at ``path`` (a run folder: its latest), its meta.json, and a copy of the
    recipe it records, from which the run's data and sampler are rebuilt."""
    from ebmkit._engine.checkpoint import find_checkpoint, read_meta

    folder = find_checkpoint(path)
    meta = read_meta(folder)
    data = copy.deepcopy(meta.get("recipe") or {})
    if not data:
        raise EbmkitError(f"{folder / 'meta.json'} records no recipe, so the run's data and sampler cannot be rebuilt")
    return folder, meta, data


def restore_buffer(components: Any, folder: Path, meta: dict[str, Any], device: Any) -> None:
    """Fill the rebuilt replay buffer with the one the checkpoint saved (rank 0's), so that an
    evaluator with ``source = "buffer"`` continues the chains training left, as it did in training."""
    from ebmkit._engine.checkpoint import read_state

    if components.buffer is None or meta["format"] < 3:
        return
    saved = read_state(folder, device, rank=0, world_size=int(meta.get("world_size", 1)))
    state = saved["components"].get("buffer")
    if state is not None:
        components.buffer.load_state_dict(state)


def _run(components: Any, energy: Any, run_dir: Path, step: int, ema: bool, console: Any) -> dict[str, Any]:
    from ebmkit._engine.builtin.evaluation import run_evaluator
    from ebmkit._host.protocols import EvalContext

    device = next((p.device for p in energy.parameters()), torch.device("cpu"))
    metrics: dict[str, Any] = {}
    for placed in components.evaluators:
        ctx = EvalContext(energy, components.dataset, components.sampler, components.noise, run_dir, step, device,
                          components.buffer, ema=ema)
        if console is not None:
            console.print(f"evaluating {placed.name} on step {step} of {run_dir}")
        found = run_evaluator(placed.name, placed.component, ctx, seed=step)
        named = {k: (v if isinstance(v, str) else float(v)) for k, v in found.items()}
        (run_dir / f"eval_{placed.name}_step{step:07d}.json").write_text(json.dumps({"step": step, **named}, indent=1))
        metrics.update(named)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, "source": "ebmkit eval", **metrics}) + "\n")
    return metrics
