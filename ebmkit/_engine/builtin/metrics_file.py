"""Writes every logged metric and event to ``metrics.jsonl`` in the run folder, one JSON object
per line, and cuts the file back to the restored step when a run resumes or rolls back."""

from __future__ import annotations

import json

from ebmkit._host.hookimpl import hookimpl
from ebmkit._engine.atomic import fsync_path, write_text


def _append(run, row):
    with (run.out_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


@hookimpl
def ebmkit_log_metrics(run, step, metrics):
    _append(run, {"step": step, **metrics})


@hookimpl
def ebmkit_event(run, step, event):
    _append(run, {"step": step, **event})


@hookimpl
def ebmkit_checkpoint_save(run):
    """Flush the lines up to this step to disk before the checkpoint that follows them lands."""
    path = run.out_dir / "metrics.jsonl"
    if path.exists():
        fsync_path(path)


@hookimpl
def ebmkit_checkpoint_load(run, folder):
    """Keep the lines up to the restored step, so that no step is missing or written twice.

    Every line of a step is written before that step's checkpoint, so the lines up to it are
    complete. A rollback's event is kept only if the restored state counts that rollback.
    A line a kill cut short is dropped.
    """
    path = run.out_dir / "metrics.jsonl"
    if not path.exists():
        return
    if folder is None:
        path.unlink()
        return
    step, retries = run.state.step, run.state.retries
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step and row.get("retry", 0) <= retries:
            kept.append(line + "\n")
    write_text(path, "".join(kept))
