"""Streaming shot boundary detector over per-frame features.

Frames are pushed in batches; boundaries come out in order once enough
frames after them have been seen (about 2.5 s), so memory is bounded by
that look-ahead, never by the video's length. Three rules, each relative
to local statistics rather than fixed to some test material:

* **Flashes** (a camera flash, lightning, one or two frames): a frame
  that differs from the one before it while a frame one or two later
  returns to the earlier content gets the earlier frame's features, so no
  later rule ever sees it.
* **Hard cuts**: the change into a frame is large in absolute terms and
  several times the mean change of its neighbours (the rolling-ratio idea
  of PySceneDetect's AdaptiveDetector, which tolerates camera motion), and
  every frame just before differs from every frame just after.
* **Gradual transitions** (dissolves, fades): the colour distribution
  ``w`` frames before a point differs strongly from ``w`` frames after it,
  the change is coherent (about as large as the summed frame-to-frame
  changes, unlike noise or jitter) and isolated (much larger than the
  same-length change just before and just after, unlike a steady pan or
  drift). An object passing in front of the camera for less than ``2w``
  frames leaves both ends alike, so it is not a transition either. Wipes,
  slides and shape transitions are gradual transitions too; a slide's
  large frame-to-frame steps count as coherent when each is the previous
  frame moved.
* **Not a boundary** (given the frames' small luma images): a candidate
  whose two sides are the same picture shifted, zoomed or re-exposed
  (pipeline.shots.continuity) is a light change, shake or a fast zoom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.shots.boundary import ShotBoundary, Transition
from pipeline.shots.continuity import aligned_similarity, best_alignment, zoomed_similarity
from pipeline.shots.features import content_distance


@dataclass(frozen=True)
class DetectorParams:
    """Every tunable of the detector, in one place (tests and tuning pass their own).

    Values are relative to local statistics wherever possible; the absolute
    floors only keep near-static noise from looking like a boundary.
    """

    # Hard cuts.
    cut_min_change: float = 0.12  # absolute floor on the change into the cut frame
    cut_ratio: float = 3.0  # ... and at least this times the neighbours' mean change
    cut_neighbours: int = 3  # frames each side for that mean
    # Flashes.
    flash_min_change: float = 0.08  # a jump smaller than this is never treated as a flash
    flash_return: float = 0.35  # a later frame within this fraction of the jump counts as "back"
    flash_max_frames: int = 2  # longest flash, in frames
    # Blank frames (a fade's black): luma grid standard deviation below this.
    blank_std: float = 8.0
    fade_contrast: float = 0.35  # frames between two close boundaries dimmed below this share of both shots' contrast: a fade
    # Gradual transitions.
    gradual_half_window_s: float = 0.5  # w: compare frames t-w and t+w
    gradual_min_change: float = 0.3  # absolute floor on that change
    gradual_coherence: float = 0.35  # ... and at least this share of the summed frame-to-frame changes
    gradual_isolation: float = 2.0  # ... and this times the same-length change on the calmer side
    gradual_isolation_busy: float = 1.25  # ... and this times the change on the busier side
    # Continuity (light changes, shake, zooms): a candidate boundary whose two sides match structurally.
    continuity_floor: float = 0.5  # the aligned luma correlation across must reach this ...
    continuity_ratio: float = 0.8  # ... and this share of the best correlation between neighbouring frames
    # Input frames may repeat the previous one (reference frames held over skipped B-frames).
    held_frames: bool = False
    zoom_min_steps: int = 3  # a gradual candidate with this many zoom-matched steps is a camera zoom
    zoom_gain: float = 0.02  # a step is zoom-matched when zooming raises its correlation by this much over shifting
    zoom_min_factor: float = 1.3  # ... and the zoom-matched steps, nearly all one way, add up to this change of scale
    moving_share: float = 0.75  # share of steps matched by a shift that makes a busy window one moving picture (a slide)


class ShotDetector:
    """Push feature batches, get boundaries back in frame order (a pipeline.shots.boundary.Detector)."""

    def __init__(self, fps: float, params: DetectorParams | None = None) -> None:
        fps = fps if fps and fps > 0 else 25.0
        self.p = p = params or DetectorParams()
        self.w = max(3, int(round(p.gradual_half_window_s * fps)))
        self.lookahead = 3 * self.w + p.cut_neighbours + 2
        self.lookback = 3 * self.w + p.cut_neighbours + 2
        self._hist = np.zeros((0, 64), np.float32)
        self._blank = np.zeros(0, bool)
        self._contrast = np.zeros(0, np.float32)  # luma grid standard deviation per frame
        self._last_emitted: ShotBoundary | None = None
        self._grid: np.ndarray = np.zeros((0, 0, 0), np.float32)  # (frames, rows, cols) once the first grid arrives
        self._luma: np.ndarray | None = None  # (frames, h, w) small luma images, when the caller gives them
        self._base = 0  # frame index of row 0 of the buffers
        self._flash_checked = 1  # next frame to check for a flash
        self._decided = 1  # next frame to decide whether a shot starts there
        self._pending: list[ShotBoundary] = []
        self._last_gradual = -(10**9)
        self.final_below = 0  # every boundary before this frame has been returned

    @property
    def frames_seen(self) -> int:
        return self._base + len(self._hist)

    def push(self, hist: np.ndarray, grid: np.ndarray, luma: np.ndarray | None = None) -> list[ShotBoundary]:
        """Add the next frames' features; returns boundaries now final.

        With ``luma`` (the frames' small luma images) every candidate
        boundary is also checked for structural continuity: light changes
        and camera motion are then not boundaries.
        """
        if luma is not None:
            luma = luma.astype(np.float32)
            self._luma = luma if self._luma is None or not len(self._luma) else np.concatenate([self._luma, luma])
        self._hist = np.concatenate([self._hist, hist.astype(np.float32)])
        contrast = grid.std(axis=1).astype(np.float32)
        self._contrast = np.concatenate([self._contrast, contrast])
        self._blank = np.concatenate([self._blank, contrast < self.p.blank_std])
        self._grid = grid.astype(np.float32) if not len(self._grid) else np.concatenate([self._grid, grid])
        return self._advance(final=False)

    def finish(self) -> list[ShotBoundary]:
        """No more frames: decide the rest."""
        if not len(self._grid):
            return []
        return self._advance(final=True)

    # --- internals -------------------------------------------------------------------------------

    def _dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Content distance between absolute frames ``a`` and ``b`` (arrays of indices)."""
        ia, ib = a - self._base, b - self._base
        return content_distance(self._hist[ia], self._grid[ia], self._hist[ib], self._grid[ib])

    def _suppress_flashes(self, upto: int) -> None:
        """Give flash frames in [_flash_checked, upto) the features of the frame before them."""
        end = self.frames_seen
        t0 = self._flash_checked
        if upto <= t0:
            return
        ts = np.arange(t0, upto)
        jump = self._dist(ts - 1, ts)
        for t in ts[jump >= self.p.flash_min_change]:
            t = int(t)
            before = self._dist(np.array([t - 1]), np.array([t]))[0]  # may have changed by a suppression
            if before < self.p.flash_min_change:
                continue
            for k in range(1, self.p.flash_max_frames + 1):
                if t + k >= end:
                    break
                back = self._dist(np.array([t - 1]), np.array([t + k]))[0]
                if back <= self.p.flash_return * before:
                    rows = slice(t - self._base, t + k - self._base)
                    self._hist[rows] = self._hist[t - 1 - self._base]
                    self._grid[rows] = self._grid[t - 1 - self._base]
                    if self._luma is not None:
                        self._luma[rows] = self._luma[t - 1 - self._base]
                    break
        self._flash_checked = upto

    def _advance(self, final: bool) -> list[ShotBoundary]:
        end = self.frames_seen
        self._suppress_flashes(end if final else max(self._flash_checked, end - self.p.flash_max_frames))
        hi = end if final else end - self.lookahead
        if hi > self._decided:
            self._decide(self._decided, hi, end if final else self._flash_checked)
            self._decided = hi
        # Gradual boundaries land up to w frames before the candidate that found them.
        ready_below = end if final else self._decided - self.w - 1
        self.final_below = max(self.final_below, ready_below)
        ready = [self._mark_join(b) for b in self._pending if b.frame < ready_below]
        self._pending = [b for b in self._pending if b.frame >= ready_below]
        keep_from = max(0, self._decided - self.lookback) - self._base
        if keep_from > 0:
            self._hist = self._hist[keep_from:]
            self._grid = self._grid[keep_from:]
            self._blank = self._blank[keep_from:]
            self._contrast = self._contrast[keep_from:]
            if self._luma is not None:
                self._luma = self._luma[keep_from:]
            self._base += keep_from
        return ready

    def _mark_join(self, b: ShotBoundary) -> ShotBoundary:
        """A boundary right after a blank stretch that follows the previous one ends the same transition.

        A fade through black (or white) shows up as a change into the blank
        frames and a change out of them; the frames in between are no shot.
        """
        prev = self._last_emitted
        if prev is None or b.frame - prev.frame > 3 * self.w:
            self._last_emitted = b
            return b
        lo, hi = prev.frame - self._base, b.frame - self._base
        if lo < 0 or hi <= lo:
            self._last_emitted = b
            return b
        # Mostly blank frames between, or a short dip far below the contrast on both sides (a short fade
        # never quite reaches flat; a whole low-contrast shot between two cuts is no dip).
        ref = min(self._contrast[max(0, lo - 1)], self._contrast[min(hi, len(self._contrast) - 1)])
        dip = float(np.mean(self._contrast[lo:hi] < self.p.fade_contrast * ref))
        dimmed = 0.0 < dip <= 0.5
        if not (self._blank[lo:hi].mean() >= 0.3 or dimmed):
            self._last_emitted = b
            return b
        # Joined: the fade still starts at ``prev``, so a third step inside it joins too.
        return ShotBoundary(b.frame, b.kind, b.guard, joins_previous=True)

    def _decide(self, lo: int, hi: int, known_end: int) -> None:
        """Find boundaries for candidate frames in [lo, hi) using features in [_base, known_end)."""
        base, w = self._base, self.w
        first = max(base + 1, lo - w - self.p.cut_neighbours)
        last = min(known_end, hi + w + self.p.cut_neighbours)
        ts = np.arange(first, last)
        if len(ts) == 0:
            return
        change = self._dist(ts - 1, ts)
        cuts = self._hard_cuts(ts, change, known_end)
        cut_frames = ts[cuts]
        for t in cut_frames:
            if lo <= t < hi:
                guard = 1 + self._unsettled_extent(int(t), known_end)
                self._pending.append(ShotBoundary(int(t), Transition.CUT, guard))
        self._gradual(lo, hi, known_end, cut_frames)
        self._pending.sort(key=lambda b: b.frame)

    def _unsettled_extent(self, t: int, known_end: int) -> int:
        """How many frames next to the cut at ``t`` still change unusually fast (a fade's ramp, say).

        Those frames are part of the transition, not of either shot, so
        candidates keep clear of them.
        """
        w = self.w
        lo, hi = max(self._base + 1, t - 2 * w), min(known_end, t + 2 * w)
        ts = np.arange(lo, hi)
        change = self._dist(ts - 1, ts)
        calm = float(np.median(change))
        busy = change > max(0.02, 3 * calm)
        extent = 0
        for direction in (-1, 1):
            k = 0
            while k < w:
                i = t + direction * (k + 1) - lo
                if not (0 <= i < len(busy)) or not busy[i]:
                    break
                k += 1
            extent = max(extent, k)
        return extent

    def _hard_cuts(self, ts: np.ndarray, change: np.ndarray, known_end: int) -> np.ndarray:
        padded = np.concatenate([np.zeros(self.p.cut_neighbours), change, np.zeros(self.p.cut_neighbours)])
        # With held frames (the reference pass), repeats say nothing about motion; leave them out.
        moved = (change > 0).astype(float) if self.p.held_frames else np.ones(len(change))
        counts = np.concatenate([np.zeros(self.p.cut_neighbours), moved, np.zeros(self.p.cut_neighbours)])
        kernel = np.ones(2 * self.p.cut_neighbours + 1)
        sums = np.convolve(padded, kernel, mode="valid") - change
        cnt = np.maximum(1.0, np.convolve(counts, kernel, mode="valid") - moved)
        neighbour_mean = sums / cnt
        is_cut = (change >= self.p.cut_min_change) & (change >= self.p.cut_ratio * neighbour_mean + 0.02)
        for i in np.flatnonzero(is_cut):
            t = int(ts[i])
            before = np.array([a for a in (t - 2, t - 1) if a >= self._base])
            after = np.array([b for b in (t, t + 1) if b < known_end])
            aa, bb = np.meshgrid(before, after)
            if self._dist(aa.ravel(), bb.ravel()).min() < 0.5 * change[i]:
                is_cut[i] = False
            elif self._continues(t - 1, t, known_end):
                is_cut[i] = False  # the same picture re-lit, shaken or zoomed
        return is_cut

    def _gradual(self, lo: int, hi: int, known_end: int, cut_frames: np.ndarray) -> None:
        base, w = self._base, self.w
        t_lo, t_hi = max(lo, base + w), min(hi, known_end - w)
        if t_hi <= t_lo:
            return
        # G[t] for t in [t_lo - w, t_hi + w) so each candidate can be compared with its neighbourhood.
        g_first = max(base + w, t_lo - w)
        g_last = min(known_end - w, t_hi + w)
        gts = np.arange(g_first, g_last)
        G = self._dist(gts - w, gts + w)
        offset = t_lo - g_first
        for j in np.flatnonzero(G[offset: offset + t_hi - t_lo] >= self.p.gradual_min_change):
            i = int(j) + offset
            t, g = g_first + i, G[i]
            window = G[max(0, i - w): i + w + 1]
            if np.argmax(window) != min(i, w):
                continue  # not the (first) local maximum
            if len(cut_frames) and np.any(np.abs(cut_frames - t) <= w):
                continue  # a hard cut explains the change
            a, b = t - w, t + w
            steps = self._dist(np.arange(a, b), np.arange(a + 1, b + 1)).sum()
            if g < self.p.gradual_coherence * steps and not self._moves_smoothly(a, b):
                continue  # busy content changing on the spot, not one picture replacing another
            if not self._isolated(g, a, b, known_end, cut_frames):
                continue
            if self._continues(a, b, known_end) or self._zooms(a, b):
                continue  # the same picture at both ends, or the camera zoomed between them
            mid = self._midpoint(a, b)
            if mid - self._last_gradual <= w:
                continue
            self._last_gradual = mid
            self._pending.append(ShotBoundary(mid, Transition.GRADUAL, w))

    def _sim(self, a: int, b: int) -> float:
        """Structural similarity of frames ``a`` and ``b`` under camera motion and exposure change."""
        assert self._luma is not None
        return aligned_similarity(self._luma[a - self._base], self._luma[b - self._base])

    def _distinct_before(self, x: int) -> int:
        """The nearest earlier frame that differs from frame ``x`` (skipping held or duplicated frames)."""
        assert self._luma is not None
        y = x - 1
        same = self._luma[x - self._base]
        while self.p.held_frames and y > self._base and x - y < 8 and np.array_equal(self._luma[y - self._base], same):
            y -= 1
        return y

    def _continues(self, a: int, b: int, known_end: int) -> bool:
        """Does frame ``b`` show the same picture as frame ``a`` (moved, zoomed or re-lit)?

        Judged against this footage's own frame-to-frame similarity (noise,
        blur and texture differ between videos): the match across must be
        nearly as good as the best match between neighbours on either side,
        and match most of the structure. A blank frame nearby means a fade
        (the picture dimmed to a flat colour), which is a transition.
        """
        if self._luma is None:
            return False
        lo, hi = max(self._base, a - self.w) - self._base, min(known_end, b + self.w + 1) - self._base
        if self._blank[lo:hi].any():
            return False  # heading to or from a flat field: a fade, whose frames also match in structure
        across = self._sim(a, b)
        if across < self.p.continuity_floor:
            return False
        neighbours = [self._sim(self._distinct_before(x), x) for x in (a, b + 1) if self._base < x < known_end]
        return not neighbours or across >= self.p.continuity_ratio * max(neighbours)

    def _moves_smoothly(self, a: int, b: int) -> bool:
        """Is every step in [a, b] the previous frame moved (a slide/push, a pan): large steps, yet coherent?

        Busy content (noise, leaves, a crowd) changes on the spot and no shift
        explains it; a slide moves both pictures together, frame by frame.
        """
        if self._luma is None:
            return False
        luma = self._luma
        steps = [aligned_similarity(luma[t - 1 - self._base], luma[t - self._base]) for t in range(a + 1, b + 1)]
        return float(np.mean(np.array(steps) >= self.p.continuity_floor)) >= self.p.moving_share

    def _zooms(self, a: int, b: int) -> bool:
        """Is [a, b] a fast zoom: several steps matched better by zooming the previous frame, the same way?

        Dissolves, wipes and fades match best unzoomed, frame to frame (a
        wipe's front may favour some zoom now and then, in no consistent
        direction); a zoom in or out matches best at a scale on the same side
        of 1, frame after frame, adding up to a real change of scale.
        """
        if self._luma is None:
            return False
        scales = []
        for t in range(a + 1, b + 1):
            score, gain, scale = best_alignment(self._luma[t - 1 - self._base], self._luma[t - self._base])
            if gain >= self.p.zoom_gain and score >= self.p.continuity_floor:
                scales.append(scale)
        if len(scales) < self.p.zoom_min_steps:
            return False
        log_scales = np.log(scales)
        same_way = max(np.mean(log_scales > 0), np.mean(log_scales < 0))
        factor = float(np.exp(log_scales.sum()))
        if same_way < 0.8 or abs(np.log(factor)) < np.log(self.p.zoom_min_factor):
            return False
        # Before/after consistency: the end frame is the start frame zoomed by the accumulated factor.
        ends = zoomed_similarity(self._luma[a - self._base], self._luma[b - self._base], factor)
        return ends >= self.p.continuity_floor

    def _isolated(self, g: float, a: int, b: int, known_end: int, cut_frames: np.ndarray) -> bool:
        """Is the change over [a, b] well above the same-length change just before and after it?

        A side window that runs into a hard cut is shortened to stop at the
        cut (it still measures how fast this shot changes on its own); one
        left shorter than half the window, or off the video, is left out.
        The calmer side must be far below, the busier one below.
        """
        span = b - a
        sides = []
        for lo, hi in ((a - span, a), (b, b + span)):
            lo, hi = max(lo, self._base), min(hi, known_end - 1)
            inside = cut_frames[(cut_frames > lo) & (cut_frames <= hi)] if len(cut_frames) else cut_frames
            if len(inside):
                lo, hi = (int(inside.max()), hi) if hi == a else (lo, int(inside.min()) - 1)
            if hi - lo < span // 2:
                continue
            # A shortened side is scaled up to the full span: steady drift must not look calm.
            sides.append(float(self._dist(np.array([lo]), np.array([hi]))[0]) * span / (hi - lo))
        if not sides:
            return True
        return g >= self.p.gradual_isolation * min(sides) and g >= self.p.gradual_isolation_busy * max(sides)

    def _midpoint(self, a: int, b: int) -> int:
        """The frame in (a, b] where the change from frame a equals the change to frame b."""
        ss = np.arange(a + 1, b + 1)
        from_a = self._dist(np.full(len(ss), a), ss)
        to_b = self._dist(ss, np.full(len(ss), b))
        return int(ss[np.argmin(np.abs(from_a - to_b))])
