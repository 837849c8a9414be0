"""Does one frame continue another? Structure matched under camera motion and light changes.

A hard cut or a transition replaces the picture; a light switched on,
auto-exposure, a shaking hand-held camera or a fast zoom keep the same
picture, only moved, scaled or re-exposed. So the test is structural:
the zero-mean normalised cross-correlation of luma (blind to gain and
offset, hence to exposure and colour temperature steps), maximised over
small shifts and zoom factors (a central crop of one frame searched in
the other). Frames are the detector's ~64x36 ones, so this costs a few
tens of microseconds and runs only on candidate boundaries.
"""

from __future__ import annotations

import cv2
import numpy as np

# Zoom factors tried between two frames (a fast zoom changes scale by up to ~1.4x a frame).
_SCALES = (1.0, 0.93, 1.07, 0.87, 1.15, 0.75, 1.33, 0.65, 1.5)
# The template is the central part of the first frame; the rest of the frame is the shift search range.
_CROP = 0.7
# Below this luma standard deviation a frame has no structure to match (a flat colour, a blank).
_FLAT_STD = 4.0


def aligned_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How well each frame continues the other (-1..1), shifted and zoomed; 0 when either is flat.

    Both ways round, the lower score: a smooth ramp can correlate well with a
    single edge in one direction by chance, rarely in both.
    """
    return min(best_alignment(a, b)[0], best_alignment(b, a)[0])


def best_alignment(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(best normalised correlation, how much it beats the best unzoomed one, the zoom that gave it).

    The second value is 0 when no zoom does better than a plain shift; a
    camera zoom makes it clearly positive step after step, always zooming
    the same way, while a wipe or a dissolve (whose frames match best
    unzoomed) leaves it near 0 or picks zooms at random.
    """
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    if a.std() < _FLAT_STD or b.std() < _FLAT_STD:
        return 0.0, 0.0, 1.0
    h, w = a.shape
    th, tw = max(4, int(h * _CROP)), max(4, int(w * _CROP))
    best, unzoomed, best_scale = -1.0, -1.0, 1.0
    for s in _SCALES:
        scaled = a if s == 1.0 else cv2.resize(a, (max(tw, round(w * s)), max(th, round(h * s))),
                                               interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        sh, sw = scaled.shape
        y0, x0 = (sh - th) // 2, (sw - tw) // 2
        template = scaled[y0: y0 + th, x0: x0 + tw]
        if template.std() < _FLAT_STD:
            continue
        score = cv2.matchTemplate(b, template, cv2.TM_CCOEFF_NORMED)
        top = float(score.max())
        if top > best:
            best, best_scale = top, s
        if s == 1.0:
            unzoomed = top
    return best, best - unzoomed, best_scale


def zoomed_similarity(a: np.ndarray, b: np.ndarray, factor: float) -> float:
    """Correlation of ``b`` with ``a`` zoomed by ``factor`` (any size; >1 zooms in), searched over small shifts."""
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    if factor < 1:  # zoomed out: all of ``a`` appears smaller inside ``b``
        a, b, factor = b, a, 1.0 / factor  # same test, the other way round
    if a.std() < _FLAT_STD or b.std() < _FLAT_STD:
        return 0.0
    h, w = a.shape
    # The part of ``a`` that stays in view, magnified to ``b``'s scale, minus a margin for the shift search.
    ch, cw = max(2, round(h / factor)), max(2, round(w / factor))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    magnified = cv2.resize(a[y0: y0 + ch, x0: x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    th, tw = int(h * _CROP), int(w * _CROP)
    y1, x1 = (h - th) // 2, (w - tw) // 2
    template = magnified[y1: y1 + th, x1: x1 + tw]
    if template.std() < _FLAT_STD:
        return 0.0
    return float(cv2.matchTemplate(b, template, cv2.TM_CCOEFF_NORMED).max())
