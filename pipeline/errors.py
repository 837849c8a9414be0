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
