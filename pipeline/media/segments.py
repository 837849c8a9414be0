"""Decode a stream's reference frames as keyframe-aligned segments, several ffmpeg processes at once.

Why: with B-frames skipped (``-skip_frame bidir``), what is left is one
chain of P-frames, each predicted from the one before, and a decoder's
frame threads can only overlap a few of them: one ffmpeg keeps about 1.5 of
2 cores busy (docs/scenes.md, "Speed"). A keyframe starts an independent
chain, so segments that start on keyframes decode in parallel processes
and, put back in order, give exactly the frames one decode gives.

Each segment is one sandboxed ffmpeg (pipeline.media.decode.FrameStream) that
keeps the packet clock (``-copyts``) and starts at its keyframe without
trimming; its frames are mapped to display frame numbers with the packet
index and anything outside the segment is dropped. A segment that does
not start where it should (a demuxer that seeks past the keyframe) is
decoded again from the segment before; if that starts late too, seeking
is not trusted in this file and one process decodes the rest from the
start. A wrong seek costs time (at most one decode more), never frames.
At most ``workers`` segments decode at once, and each holds at most
``QUEUE_BATCHES`` batches ahead of the consumer, so memory stays bounded
for any length.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import Settings
from pipeline.media.decode import DecodeOptions, FrameBatch, FrameStream
from pipeline.media.reference import PacketIndex

SEGMENT_S = 12.0  # target length: a few GOPs; longer costs balance at the end, shorter a process start (~0.2 s CPU) each
BATCH_FRAMES = 16  # a segment notices its end within this many frames
QUEUE_BATCHES = 12  # 192 reference frames (~15 s with x264 defaults) held per segment ahead of the reader
LOOKAHEAD_SEGMENTS = 2  # segments decoded ahead of the one being read (bounds memory: ~70 MB each at 360p)
# ffmpeg's input -t (a duration from -ss) stops just before the next segment's keyframe: a quarter
# frame short of it, so rounding can neither drop the segment's last frame nor decode that keyframe.
END_MARGIN_FRAMES = -0.25


@dataclass(frozen=True)
class Segment:
    """Display frames ``first`` (a keyframe, shown at packet time ``start_s``) up to ``end`` (exclusive)."""

    first: int
    end: int
    start_s: float


@dataclass
class ReferenceBatch:
    """Decoded frames in display order with their display frame numbers, and the samples among them."""

    displays: np.ndarray
    frames: np.ndarray
    samples: list[tuple[int, np.ndarray]]  # (display frame, RGB image)


def plan_segments(index: PacketIndex, target_s: float = SEGMENT_S) -> list[Segment]:
    """Split at keyframes into segments of about ``target_s``.

    The split depends on the stream alone, never on how many processes
    decode it, so every machine samples the same candidate frames.
    """
    total = len(index.times)
    cuts = [0]
    for k in np.flatnonzero(index.keyframe).tolist():
        if index.times[k] - index.times[cuts[-1]] >= target_s:
            cuts.append(k)
    if len(cuts) > 1 and index.times[-1] - index.times[cuts[-1]] < target_s / 2:
        cuts.pop()  # a short tail joins the segment before
    ends = cuts[1:] + [total]
    return [Segment(a, b, float(index.times[a])) for a, b in zip(cuts, ends, strict=True)]


class _SegmentDecode(threading.Thread):
    """Runs one segment's ffmpeg and queues its batches; stops once it has passed the segment's end."""

    def __init__(
        self, source: Path, opts: DecodeOptions, settings: Settings, end_s: float | None,
        clock_offset: Callable[[], float | None],
    ) -> None:
        super().__init__(daemon=True)
        self.stream = FrameStream(source, opts, batch_frames=BATCH_FRAMES, settings=settings)
        self.end_s = end_s
        self.clock_offset = clock_offset  # packet clock - decoder clock, once the consumer knows it
        self.seek_s = opts.seek_s
        self.out: queue.Queue[FrameBatch | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self.cancelled = threading.Event()
        self.code = 0
        self.errors = ""
        self.failure: Exception | None = None
        self.decoding = True  # ffmpeg still running (its output may still wait in the queue)

    def run(self) -> None:
        stopped_early = False
        try:
            for fb in self.stream.batches():
                if not self._put(fb):
                    return
                if self._past_end(fb.times):
                    stopped_early = True  # the next segment's keyframe reached: the rest is not ours
                    break
            self.decoding = False
            if not stopped_early:
                self.code = self.stream.finish()
            self.errors = self.stream.error_summary()
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it in order
            self.failure = exc
        finally:
            self.decoding = False
            self.stream.close()
            self._put(None)

    def _past_end(self, times: np.ndarray) -> bool:
        offset = self.clock_offset()
        if self.end_s is None or offset is None or not len(times):
            return False
        return bool(np.nanmax(times, initial=-np.inf) + offset >= self.end_s)

    def _put(self, item: FrameBatch | None) -> bool:
        while not self.cancelled.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def cancel(self) -> None:
        self.cancelled.set()
        self.stream.close()
        self.join(timeout=10)


class SegmentedDecode:
    """Reference frames of the whole stream, in display order, decoded segment by segment in parallel."""

    def __init__(
        self, source: Path, index: PacketIndex, opts: DecodeOptions, settings: Settings, workers: int,
        segment_s: float = SEGMENT_S,
    ) -> None:
        self.source = source
        self.index = index
        self.settings = settings
        self.segments = plan_segments(index, segment_s)
        self.frame_step = float(np.median(np.diff(index.times))) if len(index.times) > 1 else 0.0
        self.workers = max(1, min(workers, len(self.segments)))
        threads = 0 if self.workers == 1 else 1  # one process per core beats frame threads here
        self.opts = dataclasses.replace(opts, packet_clock=True, threads=threads, seek_s=None)
        self.offset: float | None = None  # packet clock - decoder clock (0 with -copyts)
        self.last_display = -1
        self.code = 0
        self.errors: list[str] = []
        self._running: dict[int, _SegmentDecode] = {}  # started, not yet read
        self._next = 0  # the next segment to start
        self._current: _SegmentDecode | None = None  # the one being read

    def batches(self) -> Iterator[ReferenceBatch]:
        for k, seg in enumerate(self.segments):
            self._fill(k)
            outcome = yield from self._consume(self._running.pop(k), seg, k)
            if outcome == "ok":
                continue
            # The seek landed past the keyframe, or found nothing: again from the segment before.
            retry_from = self.segments[k - 1].start_s if k > 1 else None
            outcome = yield from self._consume(self._start(k, retry_from), seg, k)
            if outcome == "late":
                # Seeking cannot be trusted in this file (a crafted index cannot make every segment
                # decode from the start): one process decodes from the start to the end, once.
                self.close()
                rest = Segment(seg.first, len(self.index.times), seg.start_s)
                yield from self._consume(self._start(k, None, to_end=True), rest, k)
                return

    def _fill(self, current: int) -> None:
        """Keep ``workers`` decoders busy, at most ``LOOKAHEAD_SEGMENTS`` segments past the one being read."""
        while self._next < len(self.segments) and (
            self._next <= current
            or (self._next <= current + LOOKAHEAD_SEGMENTS and self._decoding() < self.workers)
        ):
            k = self._next
            self._running[k] = self._start(k, self.segments[k].start_s if k else None)
            self._next += 1

    def _decoding(self) -> int:
        """ffmpeg processes running now: the segment being read and those ahead of it."""
        current = [self._current] if self._current is not None else []
        return sum(w.decoding for w in [*current, *self._running.values()])

    def _start(self, k: int, seek_s: float | None, to_end: bool = False) -> _SegmentDecode:
        end_s = self.segments[k + 1].start_s if k + 1 < len(self.segments) and not to_end else None
        start_s = seek_s if seek_s is not None else float(self.index.times[0])
        duration = None
        if end_s is not None:
            duration = max(end_s - start_s + END_MARGIN_FRAMES * self.frame_step, self.frame_step / 2)
        opts = dataclasses.replace(self.opts, seek_s=seek_s, duration_s=duration)
        worker = _SegmentDecode(self.source, opts, self.settings, end_s, lambda: self.offset)
        worker.start()
        return worker

    def _consume(self, worker: _SegmentDecode, seg: Segment, k: int) -> Generator[ReferenceBatch, None, str]:
        """Yield the segment's frames: "ok"; or, having yielded nothing, "late" (it started past its
        keyframe) or "empty" (a seek that found no frame)."""
        self._current = worker
        checked = worker.seek_s is None  # a decode from the start cannot have skipped anything
        while (fb := worker.out.get()) is not None:
            self._fill(k)
            finite = np.isfinite(fb.times)
            if not finite.any():
                continue
            if self.offset is None:
                self.offset = float(self.index.times[0] - fb.times[finite][0])
            displays = self.index.frame_of(np.where(finite, fb.times, 0.0), self.offset)
            if not checked:
                checked = True
                if int(displays[finite][0]) > seg.first:
                    worker.cancel()
                    return "late"
            keep = finite & (displays >= max(seg.first, self.last_display + 1)) & (displays < seg.end)
            if not keep.any():
                continue
            by_frame = {n - fb.first: image for n, image in fb.samples}
            samples = [(int(displays[i]), by_frame[i]) for i in sorted(by_frame) if keep[i]]
            self.last_display = int(displays[keep][-1])
            yield ReferenceBatch(displays[keep], fb.frames[keep], samples)
        worker.join()
        self._current = None
        if worker.failure is not None:
            raise worker.failure
        if worker.errors:
            self.errors.append(worker.errors)
        if not checked:
            return "empty"
        self.code = self.code or worker.code
        return "ok"

    def error_summary(self) -> str:
        return "; ".join(self.errors)[:300]

    def close(self) -> None:
        """Stop every decoder still running (the reader may stop early: an error, a closed generator)."""
        for worker in [*self._running.values(), *([self._current] if self._current else [])]:
            worker.cancel()
        self._running.clear()
        self._current = None

    def __enter__(self) -> SegmentedDecode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
