"""The few error types the rest of vidx reasons about.

The CLI maps them to exit codes (bad input and config: 2, processing: 1)
and workers decide retry-or-fail by type, so keep the hierarchy small.
"""

from __future__ import annotations


class VidxError(Exception):
    """Base of every error vidx raises on purpose; its message is user-facing."""


class ConfigError(VidxError):
    """An environment variable holds a value vidx cannot use."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}={value!r} is invalid: expected {expected}")


class BadInputError(VidxError):
    """The input itself is unusable (missing, not a video, corrupt, absurd).

    Never retried: the same input would fail the same way.
    """


class ProcessingError(VidxError):
    """Indexing failed for a reason other than the input (a bug, a crash)."""


class TransientError(VidxError):
    """A dependency (database, broker, network) is unreachable; worth a retry."""


# Exception types no pipeline handler may turn into a degraded result (e.g. a
# task runner's soft time limit). The pipeline cannot import the runner, so the
# runner registers them here at import (dependency inversion).
_ALWAYS_PROPAGATE: tuple[type[BaseException], ...] = ()


def register_always_propagate(*types: type[BaseException]) -> None:
    """Declare exception types that broad ``except Exception`` handlers in the pipeline must re-raise."""
    global _ALWAYS_PROPAGATE
    _ALWAYS_PROPAGATE = tuple(dict.fromkeys((*_ALWAYS_PROPAGATE, *types)))


def always_propagate() -> tuple[type[BaseException], ...]:
    """The registered types, for an ``except always_propagate(): raise`` placed before a broad handler."""
    return _ALWAYS_PROPAGATE


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), for one-line reasons.

    Cut at a word boundary, never mid-word, so a shortened reason still reads as text.
    """
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return shorten(text, limit)


def one_line(exc: BaseException) -> str:
    """The user-facing one-line reason of an error: our own errors speak for themselves, others name their type."""
    text = first_line(exc)
    if isinstance(exc, VidxError) or text == type(exc).__name__:
        return text
    return f"{type(exc).__name__}: {text}"


def shorten(text: str, limit: int = 300) -> str:
    """``text`` within ``limit`` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"
