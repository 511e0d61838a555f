"""One TensorBoard writer per run: scalars, event texts, and the run folder's PNGs as images.

Each run's writer is a plugin object registered for that run (``run.register``, at run start;
unregistered at its end, as the console's progress bar is), so two runs in one process never
share one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ebmkit import EbmkitError, hookimpl

#: The subfolder of the run folder that holds the event files.
FOLDER = "tensorboard"

#: ``samples_step0000100.png`` -> tag ``samples`` at step 100: one image series per evaluator output.
_STEPPED = re.compile(r"^(?P<tag>.+)_step(?P<step>\d+)$")

def summary_writer_class() -> type:
    """torch's SummaryWriter, or a clear error when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise EbmkitError(
            f"[run].tensorboard = true needs the tensorboard package ({exc}); install it with "
            "'pip install ebmkit[tensorboard]', or set [run] tensorboard = false"
        ) from None
    return SummaryWriter


def image_tag_and_step(path: Path, step: int) -> tuple[str, int]:
    """The tag of a PNG (its name less a ``_stepNNNNNNN`` suffix) and the step it shows: the one
    in its name, else ``step``, the step at which it was found new."""
    found = _STEPPED.match(path.stem)
    if found is None:
        return path.stem, step
    return found["tag"], int(found["step"])


class RunLogger:
    """The writer of one run, and the PNGs of its folder already seen (by modification time and
    size); registered for the run, it takes the run's lifecycle hooks."""

    def __init__(self, run: Any, purge_step: int | None):
        self.run = run
        self.log_dir = run.out_dir / FOLDER
        self.writer = summary_writer_class()(log_dir=str(self.log_dir), purge_step=purge_step)
        # PNGs already in the folder (a resumed run's) were logged by the run that wrote them.
        self.seen = {path.name: self._signature(path) for path in run.out_dir.glob("*.png")}

    @staticmethod
    def _signature(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size

    def scalars(self, step: int, metrics: dict[str, float | str]) -> None:
        for name, value in metrics.items():
            if isinstance(value, str):  # an evaluator's protocol line: shown as text beside its numbers
                self.writer.add_text(name, value, global_step=step)
            else:
                self.writer.add_scalar(name, value, global_step=step)

    def text(self, step: int, event: dict[str, Any]) -> None:
        name = str(event.get("event", "event"))
        message = event.get("message") or json.dumps(event)
        self.writer.add_text(f"events/{name}", str(message), global_step=step)

    def new_images(self, step: int) -> None:
        """Log every PNG of the run folder that is new or changed since the last look."""
        import numpy as np
        from PIL import Image

        for path in sorted(self.run.out_dir.glob("*.png")):
            signature = self._signature(path)
            if self.seen.get(path.name) == signature:
                continue
            self.seen[path.name] = signature
            tag, shown_step = image_tag_and_step(path, step)
            try:
                with Image.open(path) as opened_image:
                    image = np.asarray(opened_image.convert("RGB"))
            except OSError as exc:  # a plot an evaluator wrote badly must not end the training run
                self.run.console.print(f"[yellow]warning:[/] TensorBoard: {path.name} is not a readable PNG ({exc}); not logged")
                continue
            self.writer.add_image(tag, image, global_step=shown_step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def restart(self, purge_step: int) -> None:
        """A new writer whose readers drop every event from ``purge_step`` on (TensorBoard's own
        purge), after the run was rolled back to ``purge_step - 1``."""
        self.writer.close()
        self.writer = summary_writer_class()(log_dir=str(self.log_dir), purge_step=purge_step)

    def close(self) -> None:
        self.new_images(self.run.state.step)  # anything written after the last evaluation
        self.writer.close()

    @hookimpl
    def ebmkit_log_metrics(self, step, metrics):
        self.scalars(step, metrics)

    @hookimpl
    def ebmkit_event(self, step, event):
        self.text(step, event)

    @hookimpl(wrapper=True)
    def ebmkit_evaluate(self, step):
        """After the evaluators ran, log the PNGs they wrote: evaluators have no image hook."""
        results = yield
        self.new_images(step)
        return results

    @hookimpl
    def ebmkit_checkpoint_save(self):
        """Flush what was logged up to this step before the checkpoint that follows it lands."""
        self.flush()

    @hookimpl
    def ebmkit_checkpoint_load(self, run):
        """A rollback: hide what was logged after the restored step. (A resumed run is handled
        when its writer opens, at run start, which comes after this hook.)"""
        self.restart(purge_step=run.state.step + 1)

    @hookimpl
    def ebmkit_run_end(self):
        """Log the last new images, flush and close the writer."""
        self.close()


def open_for(run: Any) -> RunLogger:
    """Open the run's writer. When the folder already has event files (a resumed run), the
    events after the restored step, which the run is about to write again, are purged;
    a run resumed before its first checkpoint starts again from step 0 and purges them all."""
    log_dir = run.out_dir / FOLDER
    purge_step = None
    if any(log_dir.glob("events.out.tfevents.*")):
        purge_step = run.state.step + 1 if run.resumed else 0
    return RunLogger(run, purge_step)
