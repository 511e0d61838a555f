"""Checkpoints: written and read here, and ``ebmkit.load``, which never unpickles anything.

A checkpoint folder (``checkpoints/step_NNNNNNN``) holds ``energy.safetensors``,
``ema.safetensors`` when the run keeps an EMA, ``buffer.safetensors`` (the buffer's tensors)
when it has a buffer, and ``meta.json``: the format, the step, the energy's full record
(name, every parameter including defaults, plugin, distribution and version, data shape and
number of classes) and the resolved recipe.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import safetensors.torch
import torch

from ebmkit.energy import Energy
from ebmkit.errors import EbmkitError, RecipeError
from ebmkit.registry import Registries, default_registries

if TYPE_CHECKING:
    from ebmkit.run import Run

FORMAT = 2


class PluginVersionWarning(UserWarning):
    """A checkpoint was made with another version of the plugin that supplies its energy."""


def save_checkpoint(run: Run) -> Path:
    """Write the run's weights (and EMA weights, and the buffer's tensors) and ``meta.json``."""
    step, state = run.state.step, run.state
    folder = run.out_dir / "checkpoints" / f"step_{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    buffer = run.components.buffer
    if buffer is not None and hasattr(buffer, "state_dict"):
        tensors = {k: v.contiguous() for k, v in buffer.state_dict().items() if isinstance(v, torch.Tensor)}
        safetensors.torch.save_file(tensors, str(folder / "buffer.safetensors"), metadata={"step": str(step)})
    safetensors.torch.save_model(state.energy, str(folder / "energy.safetensors"), metadata={"step": str(step)})
    if state.ema is not None:
        metadata = {"step": str(step), "decay": str(state.ema.decay)}
        safetensors.torch.save_model(state.ema.module, str(folder / "ema.safetensors"), metadata=metadata)
    dataset = run.components.dataset
    energy = {**run.recipe.one("energy").record(), "data_shape": list(dataset.sample_shape), "num_classes": dataset.num_classes}
    meta = {"format": FORMAT, "step": step, "energy": energy, "recipe": run.recipe.resolved()}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder: ``path`` itself, or the latest one of a run folder."""
    path = Path(path)
    if (path / "meta.json").exists():
        return path
    candidates = sorted((path / "checkpoints").glob("step_*")) if path.is_dir() else []
    if not candidates:
        raise EbmkitError(f"no checkpoint at {path}: expected a run folder (with checkpoints/step_*) or a checkpoint folder")
    return candidates[-1]


def load(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu", registries: Registries | None = None) -> Energy:
    """Load the energy of a checkpoint (or of a run folder's latest checkpoint).

    The energy is rebuilt from the checkpoint's record of every parameter, defaults
    included, so a plugin whose defaults changed since still rebuilds the same energy; a
    different installed version of that plugin's distribution is warned about.

    :param ema: return the EMA weights when the checkpoint has them (the default), else the raw ones.
    :return: the energy in eval mode; compose it like any other (``load(a) + load(b)``).
    """
    folder = find_checkpoint(path)
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise EbmkitError(f"{folder / 'meta.json'} has checkpoint format {meta.get('format')!r}; this ebmkit reads format {FORMAT}")
    record = meta["energy"]
    registries = registries or default_registries()
    entry = registries.get("energies", record["name"])
    if (entry.distribution, entry.version) != (record["distribution"], record["version"]):
        warnings.warn(
            f"{folder} was made with energy {record['name']!r} from {record['distribution']} {record['version']}; "
            f"the installed one comes from {entry.distribution} {entry.version}. It is rebuilt from the recorded "
            "parameters, but the plugin's code may have changed.",
            PluginVersionWarning, stacklevel=2,
        )
    try:
        energy = registries.create("energies", record["name"], **_params(record["params"]),
                                   data_shape=tuple(record["data_shape"]), num_classes=record["num_classes"])
    except RecipeError as exc:
        raise EbmkitError(f"{folder} records an energy the installed plugin cannot build:\n{exc}") from None
    weights = folder / ("ema.safetensors" if ema and (folder / "ema.safetensors").exists() else "energy.safetensors")
    missing, unexpected = safetensors.torch.load_model(energy, str(weights), strict=False)
    if missing or unexpected:
        raise EbmkitError(f"{weights} does not match energy {record['name']!r}: missing {missing}, unexpected {unexpected}")
    return energy.to(device).eval().named(Path(path).name)


def _params(params: dict) -> dict:
    """Recorded parameters as ``create`` takes them: a nested record becomes a table with its name."""
    def table(value):
        if isinstance(value, dict) and "params" in value:
            keys = {k: v for k, v in value.items() if k not in ("name", "params", "plugin", "distribution", "version")}
            return {"name": value["name"], **keys, **_params(value["params"])}
        if isinstance(value, list):
            return [table(v) for v in value]
        return value

    return {key: table(value) for key, value in params.items()}
