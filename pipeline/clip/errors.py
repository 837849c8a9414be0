"""Errors of the CLIP stage.

``embed_frames`` never raises them (it degrades a scene to a NULL embedding
with the message as the reason); ``encode_text``/``encode_image`` and
``get_model`` do, because a search without a model cannot proceed.
"""

from __future__ import annotations

from pipeline.errors import ProcessingError


class ClipUnavailableError(ProcessingError):
    """The CLIP model cannot be used: disabled, failed to load, or hung."""


class InferenceTimeout(Exception):
    """A forward pass was not back within its deadline.

    ``hung`` is True when it did not come back within the hang limit either:
    the model's inference thread is then considered lost.
    """

    def __init__(self, timeout_s: float, hung: bool) -> None:
        self.timeout_s = timeout_s
        self.hung = hung
        super().__init__(f"forward pass not back within {timeout_s:g}s" + (" (hung)" if hung else ""))
