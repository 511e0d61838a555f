"""The kinds of component: the one table from which everything about kinds is derived.

Each row says what a kind's registration hook is called, which context keywords its
factories may accept, where it sits in a recipe, and what the built object must be. The
hookspecs (:mod:`ebmkit._host.hookspecs`), the registries, the recipe schema, ``ebmkit list`` and
the registry-driven tests all read this table; nothing else lists the kinds.
"""

from __future__ import annotations

import importlib
from typing import Any

import attrs

from ebmkit._host.errors import UnknownComponentError


@attrs.frozen
class Key:
    """A key that a table's owner reads beside the component's own parameters (a loss's ``weight``)."""

    type: type
    default: Any
    minimum: float | None = None
    doc: str = ""


@attrs.frozen
class Kind:
    """One kind of component.

    :ivar name: the plural name: the registry, ``ebmkit list NAME`` and the hook suffix.
    :ivar singular: how one of them is called in messages.
    :ivar table: its recipe table, or None for a kind that only appears nested in another
        component (transitions sit in ``[[sampler.transitions]]``).
    :ivar many: an array of tables (``[[losses]]``) rather than one table.
    :ivar required: a recipe must have the table.
    :ivar context: the context keywords a factory of this kind may accept, and what they are.
    :ivar keys: keys of the table that the run reads, not the component.
    :ivar builds: what the factory returns, for the hook's documentation.
    :ivar protocol: the type the built object is checked against, as ``module:name`` (imported
        when a component is first built: listing the kinds imports no torch).
    """

    name: str
    singular: str
    table: str | None
    builds: str
    protocol: str
    many: bool = False
    required: bool = False
    context: dict[str, str] = attrs.field(factory=dict)
    keys: dict[str, Key] = attrs.field(factory=dict)

    @property
    def hook(self) -> str:
        return f"ebmkit_register_{self.name}"

    def protocol_type(self) -> type:
        """The type built objects are checked against (``protocol``, imported)."""
        module, _, name = self.protocol.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def recipe_table(self) -> str:
        """How the table is written in TOML: ``[energy]`` or ``[[losses]]``."""
        return f"[[{self.table}]]" if self.many else f"[{self.table}]"

    def hook_doc(self) -> str:
        context = "".join(f"\n    - ``{k}``: {v}" for k, v in self.context.items()) or " none."
        where = f"``{self.recipe_table}``" if self.table else "nested in other components' tables"
        keys = "".join(f"\n    - ``{k}`` ({v.type.__name__}, default {v.default!r}): {v.doc}" for k, v in self.keys.items())
        return (
            f"Register {self.name}.\n\n"
            f"    The factory returns {self.builds}\n\n"
            f"    In a recipe: {where}{' (required)' if self.required else ''}."
            f"{' Keys the run reads beside the parameters:' + keys if keys else ''}\n\n"
            f"    Context keywords (passed when the factory's signature accepts them):{context}\n\n"
            f"    :param register: a :class:`ebmkit._host.registry.Registrar` for {self.name}: "
            f"``register(name, factory, *, params=None, summary=None, aliases=(), requires=(), provides=())``.\n"
        )


KINDS: tuple[Kind, ...] = (
    Kind(
        "datasets", "dataset", "data", required=True, protocol="ebmkit._host.protocols:Dataset",
        builds="a map-style ``torch.utils.data.Dataset`` of samples, or of ``(sample, label)`` pairs, with the "
        "attributes ``sample_shape``, ``domain`` (``(low, high)`` or None) and ``num_classes`` (or None).",
    ),
    Kind(
        "energies", "energy", "energy", required=True, protocol="ebmkit._host.energy:Energy",
        builds="an :class:`ebmkit.Energy`: a ``torch.nn.Module`` whose ``forward(x, cond=None)`` returns one "
        "energy per sample, shape ``(B,)``, with p(x) ∝ exp(−E(x)). A multi-scale energy also follows "
        ":class:`ebmkit.MultiScale`.",
        context={"data_shape": "the shape of one sample, e.g. ``(2,)`` or ``(3, 32, 32)``",
                 "num_classes": "the number of condition labels, or None"},
    ),
    Kind(
        "samplers", "sampler", "sampler", required=True, protocol="ebmkit._host.protocols:Sampler",
        builds="a :class:`ebmkit.Sampler`: ``sample(energy, x0, *, cond=None, keep_graph=0)`` "
        "returns a :class:`ebmkit.SampleResult`. A sampler that runs transitions takes them as a "
        "nested parameter (``[[sampler.transitions]]``).",
    ),
    Kind(
        "transitions", "transition", None, protocol="ebmkit._host.protocols:Transition",
        builds="a :class:`ebmkit.Transition`: ``step(energy, x, ctx)`` returns a "
        ":class:`ebmkit.StepResult`. Langevin dynamics, MALA and data augmentation are transitions.",
    ),
    Kind(
        "buffers", "buffer", "buffer", protocol="ebmkit._host.protocols:Buffer",
        builds="a :class:`ebmkit.Buffer` (``draw``, ``push``, ``__len__``); one that keeps earlier "
        "samples for losses also follows :class:`ebmkit.ReferenceSet` and declares "
        "``provides=('reference_set',)``.",
        context={"noise": "a callable ``noise(n)`` that draws ``n`` fresh chain starts from the data's domain"},
    ),
    Kind(
        "losses", "loss", "losses", many=True, required=True, protocol="ebmkit._host.protocols:Loss",
        builds="a :class:`ebmkit.Loss`: ``loss(batch) -> LossOutput``, with ``needs`` "
        "(a :class:`ebmkit.Needs`) saying what the loop must produce for it.",
        keys={"weight": Key(float, 1.0, doc="the term's weight in the total loss")},
    ),
    Kind(
        "optimizers", "optimizer", "optim", required=True, protocol="torch.optim:Optimizer",
        builds="a ``torch.optim.Optimizer``.",
        context={"params": "the parameters to optimise"},
    ),
    Kind(
        "evaluators", "evaluator", "evaluators", many=True, protocol="ebmkit._host.protocols:Evaluator",
        builds="a :class:`ebmkit.Evaluator`: ``evaluate(ctx) -> dict[str, float]``; it may write "
        "files into ``ctx.out_dir``.",
        keys={"every": Key(int, 0, minimum=0, doc="evaluate every N updates (0: at the start and the end only)")},
    ),
)



def kind_named(name: str) -> Kind:
    """The kind called ``name``, plural or singular (``energies`` or ``energy``)."""
    for kind in KINDS:
        if name in (kind.name, kind.singular):
            return kind
    raise UnknownComponentError("component kinds", name, [kind.name for kind in KINDS], command="ebmkit list")
