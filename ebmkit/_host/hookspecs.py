"""The plugin contract of ebmkit: every hook a plugin may implement.

A plugin is a module (or any object) whose functions are marked with
:data:`ebmkit.hookimpl` and named after a hook below. ebmkit finds plugins through the
``ebmkit`` entry-point group; its own first-party plugins are registered there too::

    [project.entry-points.ebmkit]
    my_sampler = "my_package.plugin"

There are two families of hooks.

**Registration hooks**, one per kind of component: ``ebmkit_register_<kind>(register)``
for each kind in :data:`ebmkit._host.kinds.KINDS` (datasets, energies, samplers, transitions,
buffers, losses, optimizers, evaluators). They are generated from that table, so their
names, context keywords and documentation cannot drift from it. Each is called once per
plugin with a :class:`ebmkit._host.registry.Registrar`::

    register(name, factory, *, params=None, summary=None, aliases=(), requires=(), provides=())

What a plugin registers is kept only if all its registration hooks finish; a name that
another plugin already registered leaves the plugin out, and both are named in
``ebmkit plugins``. The protocols the built components follow are in
:mod:`ebmkit._host.protocols`.

**Lifecycle hooks**, called by the training loop (:mod:`ebmkit._engine.loop`) at its phases, in
this order::

    ebmkit_wrap_energy      once, at setup (firstresult)
    ebmkit_run_start        once, before the first update
    ebmkit_evaluate         at the start, at each update, and at the end
    ebmkit_step_end         after every update
    ebmkit_log_metrics      whenever metrics are logged
    ebmkit_event            a divergence, a rollback, an interrupt
    ebmkit_checkpoint_save  while each checkpoint is written (into its temporary folder)
    ebmkit_checkpoint_load  when the run state was restored (resume, rollback)
    ebmkit_run_end          once, at the end (also when the run fails)

Every lifecycle hook receives ``run``, the :class:`ebmkit.Run`: the recipe, the run
folder, the built components, the :class:`ebmkit._engine.state.RunState` and ``run.log``. A hook
implementation may take fewer arguments than its spec lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from ebmkit._host.kinds import KINDS, Key, Kind

if TYPE_CHECKING:
    import torch

    from ebmkit._host.registry import Registrar
    from ebmkit._engine.run import Run

hookspec = pluggy.HookspecMarker("ebmkit")


# -- registration hooks: one per kind, generated from ebmkit._host.kinds.KINDS ------------------------
def _registration_hook(kind: Kind):
    def hook(register: Registrar) -> None: ...

    hook.__name__ = hook.__qualname__ = kind.hook
    hook.__doc__ = kind.hook_doc()
    hook.__module__ = __name__
    return hookspec(hook)


for _kind in KINDS:
    globals()[_kind.hook] = _registration_hook(_kind)
del _kind


@hookspec
def ebmkit_register_commands(cli: Any) -> None:
    """Add commands to the ``ebmkit`` command-line interface.

    :param cli: the root ``click.Group``; call ``cli.command()`` or ``cli.add_command``.
    """


@hookspec
def ebmkit_run_settings() -> dict[str, Key] | None:
    """Declare the settings of ``[run]`` that this plugin reads, so that the core names none.

    A recipe's ``[run]`` table then takes them beside ebmkit's own, each checked against its
    :class:`ebmkit.Key` (type, default, minimum) and listed in the recipe reference. A run
    reads them with ``run.recipe.run_setting(name)``. They are the plugin's, not the
    training's: ``--set`` may change them when a run is resumed. A name that ebmkit or another
    plugin already declares is refused.

    :return: setting name -> its :class:`ebmkit.Key`, or None.
    """


# -- lifecycle hooks: the training loop's phases ------------------------------------------------
@hookspec(firstresult=True)
def ebmkit_wrap_energy(run: Run, energy: torch.nn.Module) -> torch.nn.Module | None:
    """Wrap the energy for a device strategy (data parallelism, compilation).

    Called once at setup, after the components are built and moved to the run's device.
    The loop, the sampler and the losses then call the returned module; the run state
    keeps the unwrapped energy, so checkpoints, the EMA and evaluators see plain weights.
    A wrapper must forward keyword arguments (``per_scale=True`` for multi-scale energies).

    Stops at the first non-None result.

    :param run: the run being set up.
    :param energy: the energy, on the run's device; under :class:`ebmkit._engine.speed.FastEnergy`
        when the recipe turns on a ``[run]`` fast path (``.module`` is the energy).
    :return: the module to train through, or None to leave the energy as it is.
    """


@hookspec
def ebmkit_run_start(run: Run) -> None:
    """The run is set up: components built, folder written. Called before the first update.

    :param run: the run.
    """


@hookspec
def ebmkit_evaluate(run: Run, step: int, when: Literal["start", "step", "end"]) -> dict[str, float] | None:
    """Evaluate the model, if due.

    Called at the start (``when="start"``, when ``[train].eval_at_start``), after every update
    but the last (``"step"``; decide yourself whether it is due), and at the end (``"end"``),
    before the final checkpoint, so that its metrics are in ``metrics.jsonl`` when the checkpoint
    lands. The recipe's ``[[evaluators]]`` are run this way by ebmkit's
    own evaluation plugin.

    :param run: the run; ``run.eval_context(step)`` gives what an evaluator needs.
    :param step: the number of updates made.
    :param when: where in the run the call comes from.
    :return: metrics as ``{"<name>/<metric>": value}``; the loop logs them. None when nothing was due.
    """


@hookspec
def ebmkit_step_end(run: Run, step: int, metrics: dict[str, float | torch.Tensor]) -> None:
    """One update is done (optimizer step, EMA, buffer push).

    :param run: the run.
    :param step: the number of updates made.
    :param metrics: this update's metrics (loss, energies, per-term values, sampler
        diagnostics, ``train_s``): floats or 0-d tensors still on the run's device. Reading a
        tensor (``float(t)``) waits for the device; the loop reads them all at once, and only
        when it logs the update. Whatever an implementation adds to the dict is logged with
        them when the update is logged. An implementation that takes ``metrics`` gets the
        sampler's diagnostics on every update; otherwise the loop computes them only on the
        updates it logs (:func:`ebmkit.diagnostics`).
    """


@hookspec
def ebmkit_log_metrics(run: Run, step: int, metrics: dict[str, float]) -> None:
    """Metrics are logged: training metrics every ``[train].log_every`` updates, and every
    evaluation's results. ebmkit's own ``metrics.jsonl`` writer and console output implement
    this hook; a logger (TensorBoard, a tracker) implements it too.

    :param run: the run.
    :param step: the number of updates made.
    :param metrics: flat ``name -> value``; evaluation metrics are named ``<evaluator>/<metric>``.
    """


@hookspec
def ebmkit_event(run: Run, step: int, event: dict[str, Any]) -> None:
    """Something happened to the run that is not a metric: training diverged, the run rolled
    back to a checkpoint, it was interrupted. ebmkit's ``metrics.jsonl`` writer records each
    event as a line ``{"step": step, **event}``; the console shows its message.

    :param run: the run.
    :param step: the number of updates made when it happened (for a rollback: the step rolled back to).
    :param event: ``{"event": name, "message": text, ...}`` with JSON values.
    """


@hookspec
def ebmkit_checkpoint_save(run: Run, folder: Path) -> None:
    """A checkpoint is being written; add your own files to it.

    The folder is the checkpoint's temporary folder: what you write is renamed into place with
    ebmkit's own files, atomically. Restore it in ``ebmkit_checkpoint_load``.

    :param run: the run.
    :param folder: the temporary checkpoint folder (renamed to ``checkpoints/step_NNNNNNN``).
    """


@hookspec
def ebmkit_checkpoint_load(run: Run, folder: Path | None) -> None:
    """The run state was restored: when a run resumes (``ebmkit run --resume``), and when a
    divergence rolls it back. Restore what you saved in ``ebmkit_checkpoint_save`` and forget
    what you recorded after ``run.state.step`` (ebmkit's ``metrics.jsonl`` writer drops those
    lines here).

    :param run: the run, its state already restored.
    :param folder: the checkpoint it came from; None when a run resumes before its first
        checkpoint, and so starts again from step 0.
    """


@hookspec
def ebmkit_run_end(run: Run, error: BaseException | None) -> None:
    """The run ended: after the final evaluation and checkpoint, or when it failed.

    :param run: the run.
    :param error: the exception that ended the run (a divergence, an interrupt), or None.
    """
