"""``ebmkit.sample``: drawing samples from any energy outside training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from ebmkit._host import checked
from ebmkit._host.data import chain_starts
from ebmkit._host.energy import Energy
from ebmkit._host.errors import EbmkitError, UnknownComponentError, did_you_mean_hint
from ebmkit._host.protocols import SampleResult
from ebmkit._host.random import seeded
from ebmkit._host.registry import Entry, Registries
from ebmkit._host.installed import default_registries

#: What a sampler registers as ``provides`` when it runs a chain of the transitions given to it
#: as its ``transitions`` parameter; ``ebmkit.sample(sampler=<a transition>)`` uses such a sampler.
TRANSITION_CHAIN = "transition_chain"


def _route(params: dict[str, Any], entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Send each keyword to the first component whose spec has a parameter of that name."""
    routed: list[dict[str, Any]] = [{} for _ in entries]
    fields = [{f.name for f in attrs.fields(e.params)} for e in entries]
    for key, value in params.items():
        owners = [i for i, names in enumerate(fields) if key in names]
        if not owners:
            known = sorted(set().union(*fields))
            hint = did_you_mean_hint(key, known)
            raise EbmkitError(
                f"unknown parameter {key!r} for {' and '.join(e.label for e in entries)}{hint}\n parameters: {', '.join(known)}"
            )
        routed[owners[0]][key] = value
    return routed


def _chain_sampler(registries: Registries) -> Entry:
    chains = [e for e in registries["samplers"].values() if TRANSITION_CHAIN in e.provides]
    if not chains:
        raise EbmkitError(
            f"no installed sampler runs a chain of transitions (provides {TRANSITION_CHAIN!r}); name a sampler instead"
        )
    return chains[0]


def _build_sampler(registries: Registries, sampler: str, params: dict[str, Any]) -> Any:
    if sampler in registries["samplers"]:
        return registries.create("samplers", sampler, **params)
    if sampler not in registries["transitions"]:
        names = [*registries["samplers"], *registries["transitions"]]
        raise UnknownComponentError(
            "samplers or transitions", sampler, names, command="ebmkit list samplers; ebmkit list transitions",
            failed_plugins=sorted(registries.failures),
        )
    chain = _chain_sampler(registries)
    transition_values, sampler_values = _route(params, [registries.get("transitions", sampler), chain])
    return registries.create("samplers", chain.name, **sampler_values, transitions=[{"name": sampler, **transition_values}])


def sample(
    energy: Energy | str | Path,
    n: int,
    *,
    sampler: str | None = None,
    shape: Sequence[int] | None = None,
    steps: int | None = None,
    seed: int | None = None,
    x0: torch.Tensor | None = None,
    cond: torch.Tensor | str | int | None = None,
    init: tuple[float, float] | None = None,
    return_result: bool = False,
    registries: Registries | None = None,
    **params: Any,
) -> torch.Tensor | SampleResult:
    """Draw ``n`` samples from ``energy``, or from a trained run: ``ebmkit.sample("runs/x", 64)``
    draws with the run's own sampler and data (its latest checkpoint, EMA weights), as
    ``ebmkit sample RUN_DIR`` does, and writes nothing.

    :param energy: an energy, or a run folder or checkpoint.
    :param sampler: a sampler's registered name, or a transition's name, which means a
        chain of that kernel (``sampler="mala"`` just works); for a run, another sampler
        than its recipe's.
    :param shape: the shape of one sample, e.g. ``(2,)`` or ``(3, 32, 32)`` (not needed
        when ``x0`` is given).
    :param steps: the number of steps (a parameter of the sampler).
    :param seed: seeds the random numbers of this call only, leaving the global state as it was.
    :param cond: the chains' condition labels (for a run: a class name, such as ``"odd"``, or index).
    :param x0: the chains' starting points; by default standard normal, or uniform on
        ``init = (low, high)``.
    :param params: parameters of the sampler or of the transition, each sent to the
        component that has it (``step_size=0.01``, ``noise_std=0.005``, ...).
    :return: the samples (detached), or the full :class:`SampleResult` with its trace.
    """
    registries = registries or default_registries()
    if isinstance(energy, str | Path):
        if x0 is not None or shape is not None or init is not None or return_result:
            raise EbmkitError("for a run, ebmkit.sample takes n, sampler, steps, seed, cond and the sampler's parameters; "
                              "x0, shape, init and return_result are for an energy")
        return _from_run(energy, n, sampler, steps, seed, cond, params, registries)
    if sampler is None:
        raise EbmkitError("ebmkit.sample needs sampler= (a sampler's or a transition's name) for an energy; a run folder brings its own")
    if steps is not None:
        params["steps"] = steps
    chain = _build_sampler(registries, sampler, params)
    device = next((p.device for p in energy.parameters()), x0.device if x0 is not None else torch.device("cpu"))
    if cond is not None:
        cond = cond.to(device)
    with seeded(seed):
        if x0 is None:
            if shape is None:
                raise EbmkitError("ebmkit.sample needs shape= (the shape of one sample) or x0=")
            x0 = chain_starts(shape, init, device)(n)
        result = checked.sample(chain, energy, x0.to(device), cond=cond)
    return result if return_result else result.x


def _from_run(path: str | Path, n: int, sampler: str | None, steps: int | None, seed: int | None, cond: Any,
              params: dict[str, Any], registries: Registries) -> torch.Tensor:
    from ebmkit._model.run_samples import sample_run

    if isinstance(cond, torch.Tensor):
        raise EbmkitError("for a run, give cond as a class name or index (e.g. cond=\"odd\"), not a tensor")
    overrides = [f"sampler.{key}={value!r}" for key, value in params.items()]
    return sample_run(path, n, sampler=sampler, overrides=overrides, steps=steps, cond=cond, seed=seed or 0, write=False,
                      registries=registries).samples
