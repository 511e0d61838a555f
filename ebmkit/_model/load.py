"""``ebmkit.load``: a trained energy back from a checkpoint, rebuilt from its record and read
only as safetensors (never unpickled)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ebmkit._engine.checkpoint import CheckpointError, PluginVersionWarning, find_checkpoint, load_weights, read_meta, run_folder_of
from ebmkit._engine.init_from import history_of
from ebmkit._host.energy import Energy
from ebmkit._host.errors import RecipeError
from ebmkit._host.protocols import Conditioning
from ebmkit._host.installed import default_registries
from ebmkit._host.registry import Registries, table_of


def load(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu", registries: Registries | None = None) -> Energy:
    """Load the energy of a checkpoint (or of a run folder's latest checkpoint).

    The energy is rebuilt from the checkpoint's record of every parameter, defaults
    included, so a plugin whose defaults changed since still rebuilds the same energy; a
    different installed version of that plugin's distribution is warned about. Only
    safetensors and JSON are read: a pickle is refused, never run.

    A model trained on labelled data knows what its labels mean (its ``conditioning``), so
    it is conditioned by class name: ``load(run).given("red")``, ``given(color="red")``.

    :param ema: return the EMA weights when the checkpoint has them (the default), else the raw ones.
    Its ``history`` lists the training runs its weights came through, earliest first: more
    than one when a run started from another's weights (``[train].init_from``).

    :return: the energy in eval mode, named after its run folder (rename with ``.named``);
        compose it like any other (``load(a).given("red") + load(b).given("circle")``).
    """
    folder = find_checkpoint(path)
    meta = read_meta(folder)
    try:
        record = meta["energy"]
        name = record["name"]
        params = {k: v for k, v in table_of({"name": name, "params": record["params"]}).items() if k != "name"}
        data_shape, num_classes = tuple(record["data_shape"]), record["num_classes"]
        conditioning = Conditioning.from_record(record.get("conditioning"))
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{folder / 'meta.json'} does not record the energy (name, params, data_shape, num_classes)") from None
    registries = registries or default_registries()
    entry = registries.get("energies", name)
    recorded = (record.get("distribution"), record.get("version"))
    if (entry.distribution, entry.version) != recorded:
        warnings.warn(
            f"{folder} was made with energy {name!r} from {recorded[0]} {recorded[1]}; "
            f"the installed one comes from {entry.distribution} {entry.version}. It is rebuilt from the recorded "
            "parameters, but the plugin's code may have changed.",
            PluginVersionWarning, stacklevel=2,
        )
    try:
        energy = registries.create("energies", name, **params, data_shape=data_shape, num_classes=num_classes)
    except RecipeError as exc:
        raise CheckpointError(f"{folder} records an energy the installed plugin cannot build:\n{exc}") from None
    weights = folder / ("ema.safetensors" if ema and (folder / "ema.safetensors").exists() else "energy.safetensors")
    load_weights(energy, weights)
    energy.conditioning = conditioning
    energy.history = tuple(history_of(folder, meta))
    return energy.to(device).eval().named(run_folder_of(folder).resolve().name)
