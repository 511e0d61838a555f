"""``ebmkit sample RUN_DIR``: draw samples from a trained run with the run's own sampler.

The run's recipe (recorded in its checkpoint) rebuilds the data (for the chains' starting
noise and the sample shape) and the sampler; the checkpoint's weights (EMA by default) are
loaded. Nothing is trained and the run's files are left as they are; the samples go to their
own folder as ``samples.png`` (a grid, small images scaled up) and ``samples.safetensors``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from ebmkit._host.errors import EbmkitError, RecipeError
from ebmkit._host.registry import Registries
from ebmkit._host.installed import default_registries


@attrs.frozen
class RunSamples:
    """What :func:`sample_run` drew, and where it wrote them (None when it wrote nothing)."""

    samples: torch.Tensor
    step: int
    out_dir: Path | None


def sample_run(
    path: str | Path, n: int = 64, *, sampler: str | None = None, overrides: Sequence[str] = (), steps: int | None = None,
    cond: str | int | None = None, seed: int = 0, ema: bool = True, device: str | None = None,
    out: str | Path | None = None, write: bool = True, nrow: int | None = None, registries: Registries | None = None,
) -> RunSamples:
    """Draw ``n`` samples from the run (or checkpoint) at ``path`` with the run's sampler.

    :param sampler: another registered sampler instead of the recipe's (its own defaults).
    :param overrides: ``KEY.PATH=VALUE`` settings of the run's recipe, e.g. ``sampler.steps=100``.
    :param steps: the sampler's number of steps (its ``steps`` parameter).
    :param cond: a class of a conditional model (a name, such as ``"odd"``, or an index).
    :param seed: seeds this call's random numbers (the global state is left as it was).
    :param out: the folder for ``samples.png`` and ``samples.safetensors``; by default
        ``RUN_DIR/samples/step<N>_seed<S>/``. Nothing is written with ``write=False``.
    """
    from ebmkit._engine.checkpoint import run_folder_of
    from ebmkit._host import checked
    from ebmkit._host.random import seeded
    from ebmkit._model.evaluate import recorded_recipe
    from ebmkit._model.load import load
    from ebmkit._recipes.build import build
    from ebmkit._recipes.recipe import apply_overrides, validate

    if n < 1:
        raise EbmkitError(f"the number of samples must be at least 1, got {n}")
    registries = registries or default_registries()
    folder, meta, data = recorded_recipe(path)
    if sampler is not None:
        data["sampler"] = {"name": sampler}
    settings = [*overrides, *([f"sampler.steps={steps}"] if steps is not None else [])]
    problems = apply_overrides(data, settings)
    if problems:
        raise RecipeError(f"ebmkit sample {path}", problems)
    data["evaluators"] = []
    if device is not None:
        data.setdefault("run", {})["device"] = device
    recipe = validate(data, f"{folder} (its recorded recipe)", registries)
    components = build(recipe, recipe.run.device)
    energy = load(folder, ema=ema, device=recipe.run.device, registries=registries)
    if isinstance(cond, str) and cond.isdigit() and cond not in getattr(energy.conditioning, "classes", ()):
        cond = int(cond)  # a class index, where no class has that name
    chosen = energy.given(cond) if cond is not None else energy
    step = int(meta.get("step", 0))
    with seeded(seed):
        samples = checked.sample(components.sampler, chosen, components.noise(n)).x.detach()
    out_dir = None
    if write:
        out_dir = Path(out) if out is not None else run_folder_of(folder) / "samples" / f"step{step:07d}_seed{seed}"
        _write(samples, out_dir, nrow or max(1, round(n**0.5)), {
            "run": str(run_folder_of(folder)), "step": step, "seed": seed, "ema": ema and (folder / "ema.safetensors").is_file(),
            "cond": cond, "sampler": data["sampler"],
        })
    return RunSamples(samples, step, out_dir)


def _write(samples: torch.Tensor, out_dir: Path, nrow: int, about: dict[str, Any]) -> None:
    """``samples.safetensors`` (with what drew them as its metadata) and ``samples.png``: a grid
    of images, or a scatter plot of 2-D points."""
    import safetensors.torch

    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {key: json.dumps(value, default=str) for key, value in about.items()}
    safetensors.torch.save_file({"samples": samples.cpu().contiguous()}, str(out_dir / "samples.safetensors"), metadata=metadata)
    if samples.dim() == 4 and samples.shape[1] in (1, 3):
        from ebmkit._model.grid import save_grid

        save_grid(samples, out_dir / "samples.png", nrow=nrow)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(5, 5))
        points = samples.cpu()
        axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
        axes.set_aspect("equal")
        axes.set_title(f"{len(points)} samples, step {about['step']}")
        figure.savefig(out_dir / "samples.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
