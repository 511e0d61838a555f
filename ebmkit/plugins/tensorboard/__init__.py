"""TensorBoard logging of a run (``[run].tensorboard = true``; ``pip install ebmkit[tensorboard]``).

When the recipe turns it on, every logged metric becomes a TensorBoard scalar at its step,
every event (a divergence, a rollback, an interrupt) a text entry, and every PNG an evaluator
writes into the run folder (sample grids, curves, OOD plots) an image, in the run folder's
``tensorboard/``. ``metrics.jsonl`` is written as always. With it off, nothing here imports
TensorBoard. See docs/tensorboard.md.
"""

from __future__ import annotations

from ebmkit import Key, hookimpl
from ebmkit.plugins.tensorboard.logger import open_for


@hookimpl
def ebmkit_run_settings():
    return {"tensorboard": Key(bool, False, doc="also log scalars, sample grids and plots to TensorBoard "
                                                "(pip install ebmkit[tensorboard]), in the run folder's tensorboard/")}


@hookimpl
def ebmkit_run_start(run):
    """Open the run's writer and register it for the run (it takes the run's other hooks);
    raises EbmkitError when the tensorboard package is missing."""
    if run.recipe.run_setting("tensorboard"):
        run.register(open_for(run), "tensorboard")
