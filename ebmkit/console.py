"""The one console of ebmkit: messages and progress to stderr, results to stdout."""

from __future__ import annotations

from rich.console import Console

#: Messages, warnings, progress bars.
console = Console(stderr=True, highlight=False)
#: Listings and results a user may pipe.
out = Console(highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """Text shown literally by rich (``[train]`` is not markup)."""
    return text.replace("[", r"\[")
