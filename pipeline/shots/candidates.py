"""Candidate frames: a bounded, evenly thinned reservoir of sampled frames per open shot.

The decoder hands over a properly decoded analysis-size frame every few
frames. Until the detector closes the shot they belong to, they wait
here; when more than ``capacity`` are waiting, every other one is dropped,
so a shot of any length keeps samples spread over its whole span while
memory stays bounded.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from pipeline.core.types import Candidate


class SampleReservoir:
    """Samples (frame, time, image) after the last closed shot, in frame order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(4, capacity)
        self._items: deque[Candidate] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, sample: Candidate, settled_below: int) -> None:
        """Keep ``sample``; thin the samples below ``settled_below`` (the open shot's settled part)."""
        self._items.append(sample)
        settled = [s for s in self._items if s.frame < settled_below]
        if len(settled) > self.capacity:
            recent = list(self._items)[len(settled):]
            self._items = deque(settled[::2] + recent)

    def take_before(self, frame: int) -> list[Candidate]:
        """Remove and return the samples of frames before ``frame`` (the next shot's start)."""
        out = []
        while self._items and self._items[0].frame < frame:
            out.append(self._items.popleft())
        return out


def pick_candidates(
    samples: list[Candidate], start: int, end: int, guard_start: int, guard_end: int, count: int
) -> list[Candidate]:
    """Up to ``count`` samples spread over frames ``start..end``, avoiding transition frames.

    Samples within ``guard_*`` frames of a boundary may belong to a dissolve
    or fade (and frames right at a cut are often blurred or mid-motion);
    they are used only when nothing else is left.
    """
    inside = [s for s in samples if start <= s.frame <= end]
    edge = (end - start + 1) // 10  # keep off the first and last tenth too
    lo, hi = start + max(guard_start, edge), end - max(guard_end, edge)
    clear = [s for s in inside if lo <= s.frame <= hi]
    pool = clear or _middle(inside, start, end)
    if len(pool) <= count:
        return pool
    # The centre of each of ``count`` equal slices of the pool: evenly spread, never the very edges.
    picks = ((np.arange(count) + 0.5) * len(pool) / count).astype(int)
    return [pool[i] for i in picks]


def _middle(samples: list[Candidate], start: int, end: int) -> list[Candidate]:
    """The sample closest to the shot's middle, as a last resort."""
    if not samples:
        return []
    mid = (start + end) / 2
    return [min(samples, key=lambda s: abs(s.frame - mid))]
