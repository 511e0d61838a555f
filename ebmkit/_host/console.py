"""The one console of ebmkit: messages and progress to stderr, results to stdout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console

#: Messages, warnings, progress bars.
console = Console(stderr=True, highlight=False)
#: Listings and results a user may pipe.
out = Console(highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """Text shown literally by rich (``[train]`` is not markup)."""
    return text.replace("[", r"\[")


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar for long work (drawing samples for FID), yielding ``advance(n)``.

    Shown on a terminal only, and only when no other live display is running: during
    training the run's own bar says what is being evaluated.
    """
    from rich.errors import LiveError
    from rich.progress import Progress

    if not console.is_terminal:
        yield lambda n: None
        return
    bar = Progress(console=console, transient=True)
    task = bar.add_task(description, total=total)
    try:
        bar.start()
    except LiveError:
        yield lambda n: None
        return
    try:
        yield lambda n: bar.advance(task, n)
    finally:
        bar.stop()
