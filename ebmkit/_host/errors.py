"""User-facing errors.

Every mistake a user can make (a bad recipe, an unknown component name, a plugin that
fails to load) raises a subclass of :class:`EbmkitError`. The CLI prints its message and
exits with code 2, without a traceback; any other exception is an internal error and
keeps its traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs


class EbmkitError(Exception):
    """Base class of every error caused by user input or the user's environment."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean_hint(name: str, candidates: Iterable[str], *, table: bool = False) -> str:
    """What follows an unknown name in every message: `` - did you mean 'x'?`` (``[x]`` with
    ``table``, for a TOML table) when a candidate is close to ``name``, else ``""``."""
    suggestion = did_you_mean(name, candidates)
    if suggestion is None:
        return ""
    return f" - did you mean [{suggestion}]?" if table else f" - did you mean {suggestion!r}?"


def singular(kind: str) -> str:
    """``energies`` -> ``energy``, ``samplers`` -> ``sampler``, ``losses`` -> ``loss``."""
    if kind.endswith("ies"):
        return kind[:-3] + "y"
    if kind.endswith("sses"):
        return kind[:-2]
    return kind[:-1] if kind.endswith("s") else kind


class UnknownComponentError(EbmkitError, LookupError):
    """A name that no loaded plugin registered for this kind of component."""

    def __init__(
        self, kind: str, name: str, available: Sequence[str], *, command: str | None = None,
        failed_plugins: Sequence[str] = (),
    ):
        self.kind, self.name, self.available = kind, name, sorted(available)
        message = f"unknown {singular(kind).replace('s or ', ' or ')} {name!r}"
        message += did_you_mean_hint(name, self.available)
        message += f"\n available {kind}: {', '.join(self.available) or '(none)'}"
        command = command or f"ebmkit list {kind}"
        message += f"\n use '{command}' for details (or install a plugin that provides it)"
        if failed_plugins:
            names = ", ".join(repr(n) for n in failed_plugins)
            message += f"\n note: plugin(s) {names} failed to load and may provide it; see 'ebmkit plugins'"
        super().__init__(message)


class ComponentBuildError(EbmkitError):
    """A component's factory refused its parameters or context, or built the wrong kind of object."""

    def __init__(self, where: str, message: str):
        self.where, self.message = where, message
        super().__init__(f"{where}: {message}")


@attrs.frozen
class RecipeProblem:
    """One problem in a recipe: where it stands (a TOML path) and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RecipeError(EbmkitError):
    """A recipe that is not well-formed; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: Sequence[RecipeProblem]):
        self.source, self.problems = source, list(problems)
        count = len(self.problems)
        lines = [f"recipe {source} is not well-formed, found {count} error{'s' if count != 1 else ''}:"]
        lines += [f"  {i}. {str(p).replace(chr(10), chr(10) + '     ')}" for i, p in enumerate(self.problems, 1)]
        super().__init__("\n".join(lines))


class TrainingDiverged(EbmkitError):
    """Training produced non-finite values or energies beyond the configured bound.

    :ivar step: the update at which it happened, when known.
    """

    def __init__(self, message: str, step: int | None = None):
        self.step = step
        super().__init__(message)


class RunInterrupted(Exception):
    """A run stopped on SIGINT (Ctrl-C) or SIGTERM after writing a checkpoint; it can be resumed.

    Not a user error: the CLI prints the message and exits with :attr:`exit_code`.
    """

    exit_code = 130

    def __init__(self, message: str, checkpoint: Any, resume_command: str):
        self.checkpoint, self.resume_command = checkpoint, resume_command
        super().__init__(message)


class RankLost(Exception):
    """A data-parallel run lost a rank (it died, raised, or did not answer within
    ``[run].collective_timeout_s``), so this rank stopped too. The message names the lost ranks.

    Not a user error: the CLI prints the message and exits with :attr:`exit_code`.
    """

    exit_code = 1


def allocation_asked(exc: BaseException) -> str | None:
    """The size a failed allocation asked for ("8.0 TiB (8,796,093,022,208 bytes)"), "" when
    torch did not say, or None when ``exc`` is not an allocation failure."""
    message = str(exc)
    if not isinstance(exc, MemoryError) and not any(s in message for s in ("allocate", "out of memory", "size calculation overflowed")):
        return None
    found = re.search(r"allocate (\d+) bytes", message)
    if found is None:
        return ""
    size, unit = float(found[1]), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024:
            break
        size /= 1024
    return f"{size:.1f} {unit} ({int(found[1]):,} bytes)"
