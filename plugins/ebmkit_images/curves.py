from __future__ import annotations

import json

import attrs

from ebmkit.protocols import EvalContext


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

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for key in self.keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                steps, values = zip(*points, strict=True)
                axes[0 if key != "loss" else 1].plot(steps, values, label=key)
        axes[0].set_title("energies (E+ data, E- samples)")
        axes[1].set_title("total loss")
        for ax in axes:
            ax.set_xlabel("step")
            ax.legend()
        fig.tight_layout()
        fig.savefig(ctx.out_dir / "curves.png", dpi=90)
        plt.close(fig)
        return {}
