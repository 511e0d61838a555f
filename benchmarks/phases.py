"""Recipes trained in two phases, the second from the first's weights (``[train].init_from``):
the comparisons train both within one budget."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The share of a comparison's training budget the first phase gets, by second-phase recipe.
#: Energy Matching's warm-up updates are cheap (no sampling); its contrastive updates run chains.
FIRST_PHASE_SHARE = {"energy_matching_8gaussians.toml": 1 / 3, "energy_matching_digits.toml": 1 / 3}


def first_phase(recipe: Path) -> Path | None:
    """The recipe of the run that ``recipe`` starts from: ``init_from = "runs/NAME"`` names NAME.toml
    beside it (the shipped recipes' convention); None for a recipe that starts from scratch."""
    source = tomllib.loads(recipe.read_text()).get("train", {}).get("init_from")
    return None if source is None else recipe.parent / f"{Path(source).name}.toml"


def train_first_phase(first: Path, overrides: Sequence[str], out_dir: Path) -> tuple[dict[str, Any], str]:
    """Train the first phase's recipe with ``overrides`` into ``out_dir/first``, quietly; its final
    metrics, and the override that starts the second phase from it."""
    from rich.console import Console

    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    metrics = train(load(first, list(overrides)), out_dir / "first", console=Console(quiet=True), live=False).metrics
    return metrics, f'train.init_from="{out_dir / "first"}"'
