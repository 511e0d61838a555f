"""Out-of-distribution detection: how well the energy tells test data from other data (AUROC)."""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs
import torch

from ebmkit import EbmkitError, EvalContext, stack_samples


def auroc(inside: torch.Tensor, outside: torch.Tensor) -> float:
    """P(score of an in-distribution sample > score of an OOD one), ties counting one half:
    the area under the ROC curve, exactly (the Mann-Whitney statistic)."""
    inside, outside = inside.double().flatten(), outside.double().flatten()
    wins = 0.0
    for chunk in inside.split(1024):
        wins += float((chunk[:, None] > outside[None]).sum()) + 0.5 * float((chunk[:, None] == outside[None]).sum())
    return wins / (len(inside) * len(outside))


def least_likely_mass(logits: torch.Tensor) -> torch.Tensor:
    """−log(1 − max_y softmax(logits)[y]) per row of (B, K) logits: increasing in the maximum
    softmax probability, and exact where that probability rounds to 1 (1 − p is the softmax mass
    of the other classes, logsumexp of their logits minus logsumexp of all)."""
    others = logits.scatter(1, logits.argmax(1, keepdim=True), float("-inf"))
    return torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)


def _check_tables(instance, attribute, value) -> None:
    from ebmkit import registries

    tables = [value] if attribute.name == "test_set" else value
    if attribute.name == "ood_sets" and not tables:
        raise ValueError("give at least one OOD set, e.g. [{name = \"uniform_noise\"}]")
    for table in tables:
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            raise ValueError(f"{attribute.name}: each set is a dataset table with a name, e.g. {{name = \"uniform_noise\"}}, got {table!r}")
        params = {k: v for k, v in table.items() if k not in ("name", "label")}
        registries().spec("datasets", table["name"], params)  # names and parameters, checked now


@attrs.frozen
class OODDetection:
    """AUROC of the energy between an in-distribution test set and out-of-distribution sets.

    With ``score = "energy"`` the score is −E(x) (the reference averages a multi-scale energy's
    scales, which ranks the same); for a conditional model, log Σ_y exp(−E(x, y)), the log of
    p(x) up to its constant. With ``score = "max_probability"`` (a conditional model only) it
    ranks as max_y p(y | x) = max_y softmax(−E(x, ·))[y], a classifier's maximum softmax
    probability: the score is −log(1 − max_y p(y | x)), computed from the energies so that
    confident predictions do not all round to probability 1 and tie. Its metrics are
    ``auroc_max_probability/<set>`` and its files ``ood_max_probability_step*``, so one recipe
    can hold both. Each set is a dataset table;
    ``label`` names it in the results. A set whose files are missing (SVHN, CIFAR-100 or
    CelebA not downloaded) is skipped and listed as skipped. Writes the score histograms
    (``ood_step*.png``) and the protocol with the numbers (``ood_step*.json``).
    """

    test_set: dict = attrs.field(validator=_check_tables)
    ood_sets: list = attrs.field(validator=_check_tables)
    num_samples: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    batch_size: int = attrs.field(default=250, validator=attrs.validators.gt(0))
    plot: bool = True
    score: Literal["energy", "max_probability"] = attrs.field(
        default="energy", validator=attrs.validators.in_(("energy", "max_probability"))
    )

    @property
    def _stem(self) -> str:
        return "ood" if self.score == "energy" else f"ood_{self.score}"

    def _described(self, ctx: EvalContext) -> str:
        """The score, as the protocol and the plots name it."""
        if self.score == "max_probability":
            return "-log(1 - max_y p(y | x)), p(y | x) = softmax(-E(x, .))"
        return "log sum_y exp(-E(x, y))" if getattr(ctx.dataset, "num_classes", None) else "-E(x)"

    def _build(self, table: dict) -> Any:
        from ebmkit import registries

        params = {k: v for k, v in table.items() if k not in ("name", "label")}
        return registries().create("datasets", table["name"], **params)

    @torch.no_grad()
    def scores(self, ctx: EvalContext, dataset: Any) -> torch.Tensor:
        n = min(self.num_samples, len(dataset))
        index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
        num_classes = getattr(ctx.dataset, "num_classes", None)
        out = []
        for start in range(0, n, self.batch_size):
            x, _ = stack_samples(dataset, index[start : start + self.batch_size])
            x = x.to(ctx.device)
            if num_classes:
                per_class = torch.stack([-ctx.energy(x, torch.full((len(x),), y, device=ctx.device)) for y in range(num_classes)], 1)
                if self.score == "max_probability":
                    out.append(least_likely_mass(per_class).cpu())
                else:
                    out.append(torch.logsumexp(per_class, 1).cpu())
            else:
                out.append(-ctx.energy(x).cpu())
        return torch.cat(out)

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        if self.score == "max_probability" and not getattr(ctx.dataset, "num_classes", None):
            raise EbmkitError(
                'ood with score = "max_probability" reads the model as a classifier, p(y | x) = softmax(-E(x, .)), and this '
                'model was trained without labels; use score = "energy"'
            )
        test = self._build(self.test_set)
        if tuple(test.sample_shape) != tuple(ctx.dataset.sample_shape):
            raise EbmkitError(f"the OOD test set has samples of shape {tuple(test.sample_shape)}; the model's data {tuple(ctx.dataset.sample_shape)}")
        inside = self.scores(ctx, test)
        results, scores, skipped = {}, {}, {}
        for i, table in enumerate(self.ood_sets):
            label = table.get("label", table["name"])
            try:
                dataset = self._build(table)
            except EbmkitError as exc:
                skipped[label] = str(exc).splitlines()[0]
                continue
            if tuple(dataset.sample_shape) != tuple(test.sample_shape):
                raise EbmkitError(f"OOD set {label!r} has samples of shape {tuple(dataset.sample_shape)}, the test set {tuple(test.sample_shape)}")
            scores[label] = self.scores(ctx, dataset)
            results[label] = auroc(inside, scores[label])
        protocol = {
            "score": self._described(ctx),
            "weights": "the run's EMA weights when it keeps an EMA, else the trained ones",
            "test_set": self.test_set,
            "ood_sets": self.ood_sets,
            "samples_per_set": {"test_set": len(inside), **{k: len(v) for k, v in scores.items()}},
            "step": ctx.step,
            "auroc": results,
            "skipped": skipped,
        }
        (ctx.out_dir / f"{self._stem}_step{ctx.step:07d}.json").write_text(json.dumps(protocol, indent=1))
        if self.plot:
            self._plot(ctx, inside, scores, results)
        prefix = "auroc" if self.score == "energy" else f"auroc_{self.score}"
        return {f"{prefix}/{label}": value for label, value in results.items()}

    def _plot(self, ctx: EvalContext, inside: torch.Tensor, scores: dict[str, torch.Tensor], results: dict[str, float]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        count = max(1, len(scores))
        fig, axes = plt.subplots(1, count, figsize=(max(5.5, 4.5 * count), 3.4), squeeze=False)
        test_name = self.test_set.get("label", self.test_set["name"])
        score = self._described(ctx)
        for ax, (label, values) in zip(axes[0], scores.items(), strict=False):
            low = float(min(inside.min(), values.min()))
            high = float(max(inside.max(), values.max()))
            bins = torch.linspace(low, high + 1e-9, 41).tolist()
            ax.hist(inside.numpy(), bins=bins, alpha=0.6, density=True, label=f"{test_name} (in)")
            ax.hist(values.numpy(), bins=bins, alpha=0.6, density=True, label=f"{label} (OOD)")
            ax.set_title(f"{label}: AUROC {results[label]:.3f}")
            ax.set_xlabel(f"score = {score} (higher: more in-distribution)")
            ax.set_ylabel("density")
            ax.legend(fontsize=8)
        if not scores:
            axes[0][0].set_title("no OOD set scored (all skipped)")
            axes[0][0].set_xlabel(f"score = {score}")
            axes[0][0].set_ylabel("density")
        fig.suptitle(f"OOD score histograms, step {ctx.step}: {test_name} (in) against each OOD set", fontsize=10)
        fig.tight_layout()
        fig.savefig(ctx.out_dir / f"{self._stem}_step{ctx.step:07d}.png", dpi=100)
        plt.close(fig)
