"""Errors of the CLIP stage.

``embed_frames`` never raises them (it degrades a scene to a NULL embedding
with the message as the reason); ``encode_text``/``encode_image`` and
``get_model`` do, because a search without a model cannot proceed.
"""

from __future__ import annotations

from pipeline.core.errors import ProcessingError

# How a NULL embedding's ``visual_clip_metadata.error`` begins, by cause. Readers
# (vidx stats, tests, dashboards) match on these prefixes, so they live here only.
TIMEOUT_PREFIX = "Timeout after"
IMAGE_READ_PREFIX = "Image read error: "
MODEL_LOAD_PREFIX = "Model load failed: "
INFERENCE_PREFIX = "Inference failed: "
EMBEDDING_PREFIX = "Embedding failed: "


def timeout_reason(timeout_s: float) -> str:
    """The contract's reason for a scene whose forward pass was late, e.g. "Timeout after 2.0s"."""
    return f"{TIMEOUT_PREFIX} {timeout_s}s"


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
