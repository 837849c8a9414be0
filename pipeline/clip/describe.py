"""A short phrase for a scene, ranked (CLIP-interrogator style), not generated.

CLIP cannot write captions; it can only say which of a set of given phrases
fits an image best. The phrase is assembled from independent rankings: the
scene's top zero-shot label as subject, then the best setting, shot type and
lighting phrase from fixed vocabularies (``pipeline.clip.vocabulary``). It is as
good as those lists: a scene whose content is in none of them gets the
nearest wrong words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.clip.labels import TextBank, unit


def best_phrase(vector: Sequence[float] | np.ndarray, phrases: Sequence[str], matrix: np.ndarray) -> str | None:
    """The phrase whose text embedding is nearest the image embedding (cosine), or None for an empty list."""
    if not len(phrases):
        return None
    return phrases[int(np.argmax(matrix @ unit(vector)))]


def describe(vector: Sequence[float] | np.ndarray, bank: TextBank, subject: str | None) -> str | None:
    """``"<subject>, <setting>, <shot>, <lighting>"`` from the ranked vocabularies (parts may be missing)."""
    parts = [subject] if subject else []
    for _, phrases, matrix in bank.slots:
        phrase = best_phrase(vector, phrases, matrix)
        if phrase:
            parts.append(phrase)
    return ", ".join(parts) or None
