"""Writes every logged metric to ``metrics.jsonl`` in the run folder, one JSON object per line."""

from __future__ import annotations

import json

from ebmkit import hookimpl


@hookimpl
def ebmkit_log_metrics(run, step, metrics):
    with (run.out_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
