"""Per-frame features for shot detection, and the distances between them.

Two cheap, complementary features of a small (about 64 px wide) RGB frame:
a joint colour histogram (4 levels per channel, 64 bins; blind to motion)
and a coarse luma grid (block means; sees structure when colours stay the
same). Both are computed for a whole batch of frames in a few numpy calls,
so Python's per-frame cost stays tiny and decoding dominates.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

HIST_BINS = 64
_GRID_BLOCK = 4
# A mean luma change of 1/3 of the full range saturates the grid distance.
_GRID_SCALE = 3.0 / 255.0


class FrameFeatures(NamedTuple):
    """Features of n consecutive frames, in the order a detector's ``push`` takes them."""

    hist: np.ndarray  # n x 64 colour histograms, each summing to 1
    grid: np.ndarray  # n x cells coarse luma grids
    luma: np.ndarray  # n x h x w small luma images


def frame_features(frames: np.ndarray) -> FrameFeatures:
    """(histograms n x 64 summing to 1, luma grids n x cells, luma images n x h x w) for ``frames`` (n x h x w x 3 uint8).

    The luma images let the detector check candidate boundaries for
    structural continuity (pipeline.shots.continuity).
    """
    n, h, w, _ = frames.shape
    q = frames >> 6
    idx = (q[..., 0].astype(np.int32) << 4) | (q[..., 1].astype(np.int32) << 2) | q[..., 2]
    idx = idx.reshape(n, -1) + (np.arange(n, dtype=np.int32) * HIST_BINS)[:, None]
    hist = np.bincount(idx.ravel(), minlength=n * HIST_BINS).reshape(n, HIST_BINS).astype(np.float32)
    hist /= h * w
    gh, gw = max(1, h // _GRID_BLOCK), max(1, w // _GRID_BLOCK)
    bh, bw = h // gh, w // gw
    f = frames[:, : gh * bh, : gw * bw].astype(np.float32)
    luma = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114
    grid = luma.reshape(n, gh, bh, gw, bw).mean(axis=(2, 4)).reshape(n, gh * gw)
    return FrameFeatures(hist, grid, luma)


def hist_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Half the L1 distance between histograms: 0 same colours, 1 disjoint."""
    return 0.5 * np.abs(a - b).sum(axis=-1)


def grid_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute luma change of the coarse grids, scaled to 0..1."""
    return np.minimum(1.0, np.abs(a - b).mean(axis=-1) * _GRID_SCALE)


def content_distance(ha: np.ndarray, ga: np.ndarray, hb: np.ndarray, gb: np.ndarray) -> np.ndarray:
    """How different two frames look (0..1): colour distribution and coarse structure, equally weighted."""
    return 0.5 * hist_distance(ha, hb) + 0.5 * grid_distance(ga, gb)
