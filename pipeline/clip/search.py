"""Query vectors for search (``vidx search --text/--image``), from the same per-process model.

Unlike ``embed_frames`` these raise: a search without a model cannot proceed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.clip.embed import embed_one_or_raise
from pipeline.clip.errors import ClipUnavailableError, InferenceTimeout
from pipeline.clip.preprocess import ImageReadError, load_image
from pipeline.clip.singleton import get_model
from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError
from pipeline.core.types import EMBEDDING_DIM


def encode_text(texts: Sequence[str], settings: Settings) -> np.ndarray:
    """``len(texts)`` x 512 float32, L2-normalised, with the model's tokenizer.

    Raises :class:`ClipUnavailableError` (model disabled, not loadable, timed out).
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    model = get_model(settings, text=True)
    assert model.tokenizer is not None
    tokens = model.tokenizer(texts)
    try:
        features, _, _ = model.infer("texts", tokens, settings.clip_timeout_s * len(texts))
    except InferenceTimeout as exc:
        raise ClipUnavailableError(f"Text encoding timed out after {exc.timeout_s:g}s") from exc
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def encode_image(path: Path, settings: Settings) -> np.ndarray:
    """(512,) float32 for an image file, exactly as ``embed_frames`` embeds a frame.

    Raises :class:`BadInputError` for an unreadable image, :class:`ClipUnavailableError`
    when the model cannot be used.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"Image not found: {path}")
    try:  # read it first: an unreadable query image is the caller's bad input, not a model problem
        load_image(path, settings.clip_max_image_size)
    except ImageReadError as exc:
        raise BadInputError(f"Cannot read image {path}: {exc}") from exc
    return embed_one_or_raise(path, settings)
