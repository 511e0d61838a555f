from __future__ import annotations

import json

import attrs

from ebmkit import EvalContext

#: legend names of the keys the training loop logs (ebmkit/_engine/loop.py)
_NAMES = {
    "e_pos": "E+ (data)",
    "e_neg": "E- (samples)",
    "loss": "loss",
}


@attrs.frozen
class TrainingCurves:
    """Plots E+, E- and the loss from metrics.jsonl (curves.png)."""

    keys: tuple[str, ...] = ("e_pos", "e_neg", "loss")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        path = ctx.out_dir / "metrics.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        rows = [r for r in rows if any(k in r for k in self.keys)]
        if not rows:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series = {}
        for key in self.keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                series[key] = tuple(zip(*points, strict=True))
        # The loss is on its own axes: its scale has nothing to do with the energies'.
        groups = [g for g in ([k for k in series if k != "loss"], [k for k in series if k == "loss"]) if g]
        fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
        for ax, keys in zip(axes[0], groups, strict=True):
            for key in keys:
                ax.plot(*series[key], label=_NAMES.get(key, key))
            if keys == ["loss"]:
                ax.set_title("training loss (total over loss terms)")
                ax.set_ylabel("loss")
            elif set(keys) <= {"e_pos", "e_neg"}:
                ax.set_title("mean energy of the batch: " + ", ".join(_NAMES[k] for k in keys))
                ax.set_ylabel("energy E(x), batch mean")
            else:
                ax.set_title(", ".join(_NAMES.get(k, k) for k in keys))
                ax.set_ylabel("value")
            ax.set_xlabel("training step")
            if len(keys) > 1:
                ax.legend()
        fig.suptitle(f"training curves up to step {ctx.step}")
        fig.tight_layout()
        fig.savefig(ctx.out_dir / "curves.png", dpi=90)
        plt.close(fig)
        return {}
