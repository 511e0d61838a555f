"""``ebmkit.load``: an energy back from a checkpoint, without unpickling anything."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch

from ebmkit.energy import Energy
from ebmkit.errors import EbmkitError
from ebmkit.registry import Registries, default_registries


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

    :param ema: return the EMA weights when the checkpoint has them (the default), else the raw ones.
    :return: the energy in eval mode; compose it like any other (``load(a) + load(b)``).
    """
    folder = find_checkpoint(path)
    meta = json.loads((folder / "meta.json").read_text())
    spec = meta.get("energy")
    if not spec:
        raise EbmkitError(f"{folder / 'meta.json'} does not say which energy it holds (an older checkpoint format)")
    registries = registries or default_registries()
    energy = registries.get("energies", spec["name"]).build(
        spec["params"], data_shape=tuple(spec["data_shape"]), num_classes=spec["num_classes"]
    )
    weights = folder / ("ema.safetensors" if ema and (folder / "ema.safetensors").exists() else "energy.safetensors")
    missing, unexpected = safetensors.torch.load_model(energy, str(weights), strict=False)
    if missing or unexpected:
        raise EbmkitError(f"{weights} does not match energy {spec['name']!r}: missing {missing}, unexpected {unexpected}")
    return energy.to(device).eval().named(Path(path).name)
