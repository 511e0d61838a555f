"""Calls into components that check what comes back.

A plugin component that returns the wrong thing (a ``step`` whose body is still ``...``
returns None) would otherwise fail later, deep in the code that uses the result. These
calls name the component, its plugin and its place in the recipe instead. The checks look
at types and shapes only: they never wait for the device.
"""

from __future__ import annotations

from typing import Any

import torch

from ebmkit._host.errors import EbmkitError, allocation_asked
from ebmkit._host.protocols import LossOutput, SampleResult, StepContext, StepResult


class ComponentContractError(EbmkitError):
    """A component returned something its kind's contract (:mod:`ebmkit._host.protocols`) does not allow."""


def _broken(component: Any, method: str, what: str, expected: str) -> ComponentContractError:
    from ebmkit._host.registry import describe

    return ComponentContractError(f"{describe(component)}: {method} {what}; it must return {expected}")


def _kind_of(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def step(transition: Any, energy: Any, x: torch.Tensor, ctx: StepContext) -> StepResult:
    """``transition.step(energy, x, ctx)``, checked: a :class:`StepResult` whose ``x`` has ``x``'s shape."""
    result = transition.step(energy, x, ctx)
    expected = "an ebmkit.StepResult(x=<the new chains, shaped like the input>, stats={...})"
    if not isinstance(result, StepResult):
        raise _broken(transition, "step()", f"returned {_kind_of(result)}", expected)
    if not isinstance(result.x, torch.Tensor) or result.x.shape != x.shape:
        got = tuple(result.x.shape) if isinstance(result.x, torch.Tensor) else _kind_of(result.x)
        raise _broken(transition, "step()", f"returned x of shape {got} for chains of shape {tuple(x.shape)}", expected)
    return result


def sample(sampler: Any, energy: Any, x0: torch.Tensor, **kwargs: Any) -> SampleResult:
    """``sampler.sample(energy, x0, ...)``, checked: a :class:`SampleResult` shaped like ``x0``,
    with ``x_graph`` when ``keep_graph`` asked for it."""
    result = sampler.sample(energy, x0, **kwargs)
    expected = "an ebmkit.SampleResult(x=<samples shaped like x0>, trace={...}, x_graph=...)"
    if not isinstance(result, SampleResult):
        raise _broken(sampler, "sample()", f"returned {_kind_of(result)}", expected)
    if not isinstance(result.x, torch.Tensor) or result.x.shape != x0.shape:
        got = tuple(result.x.shape) if isinstance(result.x, torch.Tensor) else _kind_of(result.x)
        raise _broken(sampler, "sample()", f"returned x of shape {got} for starts of shape {tuple(x0.shape)}", expected)
    if kwargs.get("keep_graph", 0) and result.x_graph is None:
        raise _broken(sampler, "sample()", f"returned no x_graph although keep_graph={kwargs['keep_graph']} was asked", expected)
    return result


def push(buffer: Any, x: torch.Tensor) -> None:
    """``buffer.push(x)``; a buffer that cannot allocate its storage (a capacity beyond the
    memory there is) is a clear error naming it and the size it asked for."""
    try:
        buffer.push(x)
    except (MemoryError, RuntimeError) as exc:
        asked = allocation_asked(exc)
        if asked is None:
            raise
        from ebmkit._host.registry import describe

        raise ComponentMemoryError(
            f"{describe(buffer)}: push() could not allocate {asked or 'its storage'}, more memory than there is; lower its capacity"
        ) from None


class ComponentMemoryError(EbmkitError):
    """A component asked for more memory than there is."""


def draw(buffer: Any, n: int, data: torch.Tensor) -> torch.Tensor:
    """``buffer.draw(n, data)``, checked: ``n`` chain starts shaped like the data's samples."""
    x = buffer.draw(n, data)
    if not isinstance(x, torch.Tensor) or x.shape[:1] != (n,) or x.shape[1:] != data.shape[1:]:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else _kind_of(x)
        raise _broken(buffer, f"draw({n}, data)", f"returned {got}", f"a tensor of shape {(n, *data.shape[1:])}")
    return x


def loss(term: Any, batch: Any) -> LossOutput:
    """``term(batch)``, checked: a :class:`LossOutput` whose value is one number."""
    out = term(batch)
    expected = "an ebmkit.LossOutput(value=<a 0-d tensor>, metrics={...})"
    if not isinstance(out, LossOutput):
        raise _broken(term, "loss(batch)", f"returned {_kind_of(out)}", expected)
    if not isinstance(out.value, torch.Tensor) or out.value.dim() != 0:
        got = f"a value of shape {tuple(out.value.shape)}" if isinstance(out.value, torch.Tensor) else f"a value that is {_kind_of(out.value)}"
        raise _broken(term, "loss(batch)", f"returned {got}", expected)
    return out


def evaluate(evaluator: Any, ctx: Any) -> dict[str, Any]:
    """``evaluator.evaluate(ctx)``, checked: a dict of metric names to numbers or text (None: no metrics)."""
    found = evaluator.evaluate(ctx)
    if found is None:
        return {}
    if not isinstance(found, dict) or not all(isinstance(k, str) for k in found):
        raise _broken(evaluator, "evaluate(ctx)", f"returned {_kind_of(found)}", "a dict of metric names to numbers or text")
    return found
