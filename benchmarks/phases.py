"""Recipes trained in two phases, the second from the first's weights (``[train].init_from``):
the comparisons train both within one budget."""

from __future__ import annotations

import tomllib
from pathlib import Path

#: The share of a comparison's training budget the first phase gets, by second-phase recipe.
#: Energy Matching's warm-up updates are cheap (no sampling); its contrastive updates run chains.
FIRST_PHASE_SHARE = {"energy_matching_8gaussians.toml": 1 / 3, "energy_matching_digits.toml": 1 / 3}


def first_phase(recipe: Path) -> Path | None:
    """The recipe of the run that ``recipe`` starts from: ``init_from = "runs/NAME"`` names NAME.toml
    beside it (the shipped recipes' convention); None for a recipe that starts from scratch."""
    source = tomllib.loads(recipe.read_text()).get("train", {}).get("init_from")
    return None if source is None else recipe.parent / f"{Path(source).name}.toml"
