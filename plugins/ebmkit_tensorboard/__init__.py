"""TensorBoard logging of a run (``[run].tensorboard = true``; ``pip install ebmkit[tensorboard]``).

When the recipe turns it on, every logged metric becomes a TensorBoard scalar at its step,
every event (a divergence, a rollback, an interrupt) a text entry, and every PNG an evaluator
writes into the run folder (sample grids, curves, OOD plots) an image, in the run folder's
``tensorboard/``. ``metrics.jsonl`` is written as always. With it off, nothing here imports
TensorBoard. See docs/tensorboard.md.
"""

from __future__ import annotations

from ebmkit import hookimpl
from ebmkit_tensorboard.logger import close, open_for, opened


@hookimpl
def ebmkit_run_start(run):
    """Open the run's writer; raises EbmkitError when the tensorboard package is missing."""
    if run.recipe.run.tensorboard:
        open_for(run)


@hookimpl
def ebmkit_log_metrics(run, step, metrics):
    logger = opened(run)
    if logger is not None:
        logger.scalars(step, metrics)


@hookimpl
def ebmkit_event(run, step, event):
    logger = opened(run)
    if logger is not None:
        logger.text(step, event)


@hookimpl(wrapper=True)
def ebmkit_evaluate(run, step):
    """After the evaluators ran, log the PNGs they wrote: evaluators have no image hook."""
    results = yield
    logger = opened(run)
    if logger is not None:
        logger.new_images(step)
    return results


@hookimpl
def ebmkit_checkpoint_save(run):
    """Flush what was logged up to this step before the checkpoint that follows it lands."""
    logger = opened(run)
    if logger is not None:
        logger.flush()


@hookimpl
def ebmkit_checkpoint_load(run):
    """A rollback: hide what was logged after the restored step. (A resumed run is handled when
    its writer opens, at run start, which comes after this hook.)"""
    logger = opened(run)
    if logger is not None:
        logger.restart(purge_step=run.state.step + 1)


@hookimpl
def ebmkit_run_end(run):
    close(run)
