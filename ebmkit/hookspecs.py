"""The plugin contract of ebmkit: every hook a plugin may implement.

A plugin is a module (or any object) whose functions are marked with
:data:`ebmkit.hookimpl` and named after a hook below. ebmkit finds plugins through the
``ebmkit`` entry-point group; its own first-party plugins are registered there too::

    [project.entry-points.ebmkit]
    my_sampler = "my_package.plugin"

Registration hooks are called once per plugin, so that every registered component
records the plugin and distribution that supplied it. Each receives ``register``, a
callable with this signature::

    register(name, factory, *, params=None, summary=None, aliases=())

- ``name``: the snake_case name that recipes and ``ebmkit.sample`` use.
- ``factory``: a callable that builds the component. It is called with the recipe's
  parameters as keyword arguments, plus the *context* keywords of its kind (listed on
  each hook) that its signature accepts.
- ``params``: an attrs class describing the user-facing parameters, their types, defaults
  and validators. When omitted, ``factory`` itself is used if it is an attrs class;
  otherwise a spec is derived from the factory's annotated signature. Recipes are
  validated against this spec before any work starts.
- ``summary``: one line for ``ebmkit list``; defaults to the first line of the factory's
  docstring.
- ``aliases``: other names that resolve to the same component.

A name registered twice for one kind is an error that names both plugins.
The protocols the built components follow are in :mod:`ebmkit.protocols`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ebmkit")

Register = Callable[..., None]


@hookspec
def ebmkit_register_energies(register: Register) -> None:
    """Register energy functions (model architectures).

    The factory returns an :class:`ebmkit.Energy`: a ``torch.nn.Module`` whose
    ``forward(x, cond=None)`` returns one energy per sample, shape ``(B,)``, with
    p(x) ∝ exp(−E(x)).

    Context keywords: ``data_shape`` (the shape of one sample, e.g. ``(2,)`` or
    ``(3, 32, 32)``) and ``num_classes`` (the number of condition labels, or None).

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_transitions(register: Register) -> None:
    """Register transitions: one step of a Markov kernel, or any map of a batch of chains.

    The factory returns a :class:`ebmkit.protocols.Transition`, whose
    ``step(energy, x, ctx)`` returns a :class:`ebmkit.protocols.StepResult`.
    Langevin dynamics, MALA and data augmentation are transitions.

    Context keywords: none.

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_samplers(register: Register) -> None:
    """Register samplers: schedules that run transitions to draw samples from an energy.

    The factory returns a :class:`ebmkit.protocols.Sampler`, whose
    ``sample(energy, x0, cond=None, keep_last_graph=False)`` returns a
    :class:`ebmkit.protocols.SampleResult`.

    Context keywords: ``transitions``, the recipe's ``[[transitions]]`` as a list of
    :class:`ebmkit.protocols.Scheduled` (a transition and how often it runs).

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_buffers(register: Register) -> None:
    """Register buffers: where sampling chains start, and what is kept between iterations.

    The factory returns a :class:`ebmkit.protocols.Buffer` (``draw``, ``push``,
    ``state_dict``, ``load_state_dict``).

    Context keywords: ``noise``, a callable ``noise(n) -> Tensor`` that draws ``n``
    fresh chain starts from the data's domain.

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_losses(register: Register) -> None:
    """Register loss terms. A recipe combines several, each with a weight.

    The factory returns a :class:`ebmkit.protocols.Loss`: a callable
    ``loss(energy, batch) -> LossOutput`` with a ``needs_graph`` attribute that asks the
    sampler to redo its last step with the autograd graph kept, and optionally
    ``needs_samples = False`` for a term that uses no negative samples (when no term needs
    them, the runner does not run the sampler).

    Context keywords: none.

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_optimizers(register: Register) -> None:
    """Register optimisers.

    The factory returns a ``torch.optim.Optimizer``.

    Context keywords: ``params``, the parameters to optimise.

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_evaluators(register: Register) -> None:
    """Register evaluators: metrics, plots and sample grids written during and after training.

    The factory returns a :class:`ebmkit.protocols.Evaluator`, whose
    ``evaluate(ctx)`` returns a dict of scalar metrics and may write files into
    ``ctx.out_dir``.

    Context keywords: none.

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_datasets(register: Register) -> None:
    """Register datasets.

    The factory returns a :class:`ebmkit.protocols.Dataset`: a map-style
    ``torch.utils.data.Dataset`` of samples (or ``(sample, label)`` pairs) with the
    attributes ``sample_shape``, ``domain`` and ``num_classes``.

    Context keywords: none.

    :param register: the registration callable described in this module's docstring.
    """


@hookspec
def ebmkit_register_commands(cli: Any) -> None:
    """Add commands to the ``ebmkit`` command-line interface.

    :param cli: the root ``click.Group``; call ``cli.command()`` or ``cli.add_command``.
    """
