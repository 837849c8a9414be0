"""Stream decoded frames out of ffmpeg through pipes, scaled inside ffmpeg.

One ffmpeg process decodes the video once and writes raw RGB frames for
up to two outputs: small frames for shot detection on stdout, and every
``sample_every``-th frame at analysis size (candidate frames) on a second
pipe. Python never sees a full-resolution frame and never holds more than
a batch of frames, so memory stays flat for any length and resolution.
Frame timestamps come from ffmpeg's ``showinfo`` filter on stderr, so
variable frame rate works. ffmpeg auto-rotates, so frames are upright.

Every child reads only its one file through the supported containers, under
resource limits (pipeline.media.sandbox); the size of every decoded frame is
checked against ``VIDX_MAX_DIMENSION`` (a stream may change size mid-way,
whatever its header said).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, ProcessingError
from pipeline.media import sandbox as media_sandbox

_SHOWINFO = re.compile(r"\[Parsed_showinfo_\d+ @ [^\]]+\] n:\s*(\d+) pts:\s*(-?\d+)\s+pts_time:(\S+)")
SHOWINFO_FILTER = "showinfo=checksum=0"  # times and sizes only: no per-plane checksums or statistics
# Candidate frames are shrunk by averaging the source pixels each one covers (swscale's "area"):
# alias-free when shrinking, and about a third of bicubic's CPU from 1080p (docs/scenes.md, "Speed").
SAMPLE_SCALE_FLAGS = "area"
_FRAME_SIZE = re.compile(r" s:(\d+)x(\d+) ")
_ERROR_HINT = re.compile(r"error|invalid|corrupt|missing|truncat|concealing", re.IGNORECASE)


# Analysis frames fit in a box this many times as wide as it is high (32:9), so an
# absurdly wide video cannot make candidate frames (and their queue) huge.
_MAX_SAMPLE_ASPECT = 32 / 9
# Detection frames are at most this many times as high as they are wide.
_MAX_DETECTION_ASPECT = 4
DECODE_FRAME_TIMEOUT_S = 60.0


def scaled_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """(w, h) fitting ``target_height`` high and 32:9 of it wide (never upscaled), aspect kept, both even."""
    out_h = min(target_height, height)
    max_w = target_height * _MAX_SAMPLE_ASPECT
    if width * out_h / height > max_w:  # wider than 32:9: the width is the binding side
        out_h = max(2, int(height * max_w / width))
    out_w = max(2, min(round(width * out_h / height / 2) * 2, int(max_w) - int(max_w) % 2))
    return out_w, max(2, out_h - out_h % 2)


def detection_size(width: int, height: int, target_width: int = 64) -> tuple[int, int]:
    """Small size for detection features: about ``target_width`` wide, aspect kept, even."""
    out_w = min(target_width, width)
    out_w -= out_w % 2
    out_h = max(2, round(height * out_w / width / 2) * 2)
    out_h = min(out_h, _MAX_DETECTION_ASPECT * max(2, out_w))
    return max(2, out_w), out_h


@dataclass(frozen=True)
class DecodeOptions:
    """What one decoding pass produces.

    ``fast_detection`` lets the decoder skip the H.264/HEVC loop filter
    (deblocking) — fine for detection features, never for candidate images,
    so it is only honoured when no samples are requested.
    """

    detect_size: tuple[int, int]
    sample_size: tuple[int, int] | None = None
    sample_every: int = 0
    fast_detection: bool = False
    threads: int = 0  # 0: ffmpeg decides
    reference_frames_only: bool = False  # skip B-frames (-skip_frame bidir): see pipeline/media/reference.py
    # One keyframe-aligned segment (pipeline/media/segments.py): frames keep the packet clock (-copyts), and
    # decoding starts at the keyframe at or before ``seek_s`` (a packet time) with nothing trimmed.
    packet_clock: bool = False
    seek_s: float | None = None
    duration_s: float | None = None  # stop reading after about this long (the caller checks the end itself)


@dataclass
class FrameBatch:
    """Consecutive detection frames ``first..first+len-1`` with their times, plus any samples among them."""

    first: int
    frames: np.ndarray  # n x h x w x 3 uint8
    times: np.ndarray  # n float64 seconds
    samples: list[tuple[int, np.ndarray]]  # (frame index, RGB image)


def _ffmpeg_args(source: Path, opts: DecodeOptions) -> list[str]:
    """ffmpeg's arguments for one decoding pass (the sandbox puts the program and its limits in front)."""
    dw, dh = opts.detect_size
    cmd = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-threads", str(opts.threads)]
    if opts.fast_detection and not opts.sample_size:
        cmd += ["-skip_loop_filter", "all"]
    if opts.reference_frames_only:
        cmd += ["-skip_frame", "bidir"]
    if opts.packet_clock:
        cmd += ["-copyts"]
    if opts.seek_s is not None:
        # seek_timestamp: -ss is a packet time, not an offset from the file's start time;
        # noaccurate_seek: no trim, whose start ffmpeg offsets by that start time anyway.
        cmd += ["-seek_timestamp", "1", "-noaccurate_seek", "-ss", f"{opts.seek_s:.6f}"]
    if opts.duration_s is not None:
        cmd += ["-t", f"{opts.duration_s:.6f}"]
    cmd += [*media_sandbox.input_options(), "-i", media_sandbox.input_spec(source), "-an", "-sn", "-dn"]
    # showinfo first: it logs each frame's time and its decoded size (checked against the limit).
    # checksum=0: its default hashes and averages every plane of every full-size frame,
    # which cost ~20-35% of the whole pass's CPU on 1080p (docs/scenes.md, "Speed").
    detect_chain = f"scale={dw}:{dh}:flags=area,format=rgb24"
    if opts.sample_size and opts.sample_every > 0:
        sw, sh = opts.sample_size
        graph = (
            f"[0:v:0]{SHOWINFO_FILTER},split=2[d][s];[d]{detect_chain}[det];"
            f"[s]select='not(mod(n\\,{opts.sample_every}))',scale={sw}:{sh}:flags={SAMPLE_SCALE_FLAGS},format=rgb24[smp]"
        )
        cmd += ["-filter_complex", graph,
                "-map", "[det]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1",
                "-map", "[smp]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:3"]
    else:
        cmd += ["-map", "0:v:0", "-vf", f"{SHOWINFO_FILTER},{detect_chain}", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]
    return cmd


class _StderrReader(threading.Thread):
    """Collects showinfo timestamps by frame number and keeps the last error-looking lines.

    Looked up by frame number, so a log line that arrives garbled costs
    that frame its timestamp (it falls back to frame / fps), never a hang.
    """

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.errors: deque[str] = deque(maxlen=5)
        self.largest: tuple[int, int, int] = (0, 0, -1)  # (w, h, frame) of the largest decoded frame
        self._times: dict[int, float] = {}
        self._latest = -1
        self._done = False
        self._cond = threading.Condition()

    def run(self) -> None:
        try:
            for raw in self.stream:
                line = raw.decode("utf-8", "replace").rstrip()
                m = _SHOWINFO.search(line)
                if m:
                    try:
                        t = float(m.group(3))
                    except ValueError:
                        t = float("nan")
                    size = _FRAME_SIZE.search(line)
                    n = int(m.group(1))
                    if size:
                        w, h = int(size.group(1)), int(size.group(2))
                        if max(w, h) > max(self.largest[:2]):
                            self.largest = (w, h, n)
                    with self._cond:
                        self._times[n] = t
                        self._latest = max(self._latest, n)
                        self._cond.notify_all()
                elif _ERROR_HINT.search(line) and "showinfo" not in line:
                    self.errors.append(line.strip())
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def time_of(self, n: int) -> float:
        """Timestamp of frame ``n`` (NaN if its line never came); waits until it was logged."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest >= n or self._done)
            return self._times.pop(n, float("nan"))


class _SampleReader(threading.Thread):
    """Drains the sample pipe so ffmpeg never blocks on it (samples are sparse)."""

    # Samples allowed ahead of the consumer beyond one batch's worth (ffmpeg's own output lag).
    SLACK = 32

    def __init__(self, fd: int, size: tuple[int, int], every: int, batch_frames: int) -> None:
        super().__init__(daemon=True)
        self.file = os.fdopen(fd, "rb", buffering=0)
        self.nbytes = size[0] * size[1] * 3
        self.shape = (size[1], size[0], 3)
        self.every = every
        # Bounded: the consumer takes a batch's samples once that batch's detection frames
        # arrived, so a batch's worth plus slack is all that can ever be waiting legitimately.
        self.samples: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(
            maxsize=batch_frames // max(1, every) + self.SLACK
        )

    def run(self) -> None:
        k = 0
        try:
            while True:
                buf = _read_exact(self.file, self.nbytes)
                if buf is None:
                    break
                self.samples.put((k * self.every, np.frombuffer(buf, np.uint8).reshape(self.shape)))
                k += 1
        finally:
            self.file.close()
            self.samples.put(None)


class _DetectionReader(threading.Thread):
    """Drains the detection pipe into a bounded queue of byte chunks (None at EOF).

    The bound (``MAX_CHUNKS`` batches, a few MB of tiny frames) keeps memory
    flat when the consumer is slow; it is far larger than how far ffmpeg's
    sample output can lag behind its detection output, so it cannot deadlock.
    """

    MAX_CHUNKS = 32

    def __init__(self, stream, chunk_bytes: int) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.chunk_bytes = chunk_bytes
        self.chunks: queue.Queue[bytearray | None] = queue.Queue(maxsize=self.MAX_CHUNKS)

    def run(self) -> None:
        try:
            while True:
                try:
                    buf = _read_exact(self.stream, self.chunk_bytes)
                except (OSError, ValueError):  # pipe closed under us (close() after an error)
                    buf = None
                if buf is None:
                    break
                self.chunks.put(buf)
                if len(buf) < self.chunk_bytes:
                    break
        finally:
            self.chunks.put(None)

    def drain(self, timeout: float = 5.0) -> None:
        """Empty the queue until the thread ends (after ffmpeg is gone), so it never stays blocked."""
        deadline = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < deadline:
            try:
                self.chunks.get(timeout=0.05)
            except queue.Empty:
                pass


def _read_exact(stream, nbytes: int) -> bytearray | None:
    """Read exactly ``nbytes`` (or the whole frames available at EOF); None at EOF."""
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    if got == 0:
        return None
    return buf if got == nbytes else buf[:got]


class FrameStream:
    """One decoding pass: iterate ``batches()``; always ``close()`` (or use ``with``)."""

    def __init__(
        self, source: Path, opts: DecodeOptions, batch_frames: int = 128, settings: Settings | None = None
    ) -> None:
        self.source = source
        self.opts = opts
        self.settings = settings or Settings()
        self.batch_frames = batch_frames
        self.frames_read = 0
        self._proc: subprocess.Popen | None = None
        self._samples: _SampleReader | None = None
        self._next_sample = 0
        self._samples_done = False
        self._reader: _DetectionReader | None = None

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        args = _ffmpeg_args(self.source, self.opts)
        pass_fds: tuple[int, ...] = ()
        sample_r = sample_w = -1
        if self.opts.sample_size and self.opts.sample_every > 0:
            sample_r, sample_w = os.pipe()
            pass_fds = (sample_w,)
            args = [c if c != "pipe:3" else f"pipe:{sample_w}" for c in args]
        try:
            self._proc = media_sandbox.start(media_sandbox.FFMPEG, args, self.settings, pass_fds=pass_fds)
        finally:
            if sample_w >= 0:
                os.close(sample_w)
        self._stderr = _StderrReader(self._proc.stderr)
        self._stderr.start()
        if sample_r >= 0:
            assert self.opts.sample_size is not None
            self._samples = _SampleReader(
                sample_r, self.opts.sample_size, self.opts.sample_every, self.batch_frames
            )
            self._samples.start()
        else:
            self._samples_done = True

    def batches(self) -> Iterator[FrameBatch]:
        """Detection frames in decode order, ``batch_frames`` at a time."""
        self._start()
        assert self._proc is not None and self._proc.stdout is not None
        dw, dh = self.opts.detect_size
        frame_bytes = dw * dh * 3
        # ffmpeg writes both outputs from one loop: while it blocks writing the
        # detection pipe it writes no samples either. So the detection pipe is
        # drained by its own thread, and waiting here for a sample ffmpeg holds
        # can never stall it (see _DetectionReader).
        reader = self._reader = _DetectionReader(self._proc.stdout, frame_bytes * self.batch_frames)
        reader.start()
        while True:
            buf = reader.chunks.get()
            if buf is None:
                break
            n = len(buf) // frame_bytes
            if n == 0:
                break
            frames = np.frombuffer(buf, np.uint8, count=n * frame_bytes).reshape(n, dh, dw, 3)
            times = np.empty(n)
            for i in range(n):
                times[i] = self._stderr.time_of(self.frames_read + i)
            self._check_frame_size()
            first = self.frames_read
            self.frames_read += n
            yield FrameBatch(first, frames, times, self._take_samples(self.frames_read))
            if len(buf) < frame_bytes * self.batch_frames:
                break
        # Flush samples for the last frames.
        self._proc.wait()

    def _check_frame_size(self) -> None:
        """Refuse the stream once any decoded frame is larger than the limit (its header may have lied)."""
        w, h, n = self._stderr.largest
        limit = self.settings.max_dimension
        if max(w, h) > limit:
            raise BadInputError(
                f"{self.source}: frame {n} is {w}x{h}, over the {limit}px limit (VIDX_MAX_DIMENSION)"
            )

    def _take_samples(self, upto: int) -> list[tuple[int, np.ndarray]]:
        """Samples of frames below ``upto``.

        Waits only for samples whose frame was already emitted on the
        detection pipe (ffmpeg has produced them too), so it cannot deadlock.
        """
        out = []
        every = self.opts.sample_every
        while not self._samples_done and self._next_sample < upto:
            item = self._samples.samples.get() if self._samples else None
            if item is None:
                self._samples_done = True
                break
            out.append(item)
            self._next_sample = item[0] + every
        return out

    def finish(self) -> int:
        """Wait for ffmpeg to exit; returns its exit code."""
        assert self._proc is not None
        code = self._proc.wait()
        self._stderr.join(timeout=5)
        return code

    def error_summary(self) -> str:
        """The last decoder complaints, one line."""
        lines = list(self._stderr.errors) if self._proc else []
        return "; ".join(re.sub(r"^\[[^\]]+\]\s*", "", line) for line in lines[-2:])[:300]

    def close(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.drain()
        if self._proc:
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream:
                    stream.close()


def decode_frame_at(
    source: Path,
    time_s: float,
    size: tuple[int, int],
    settings: Settings | None = None,
    timeout_s: float = DECODE_FRAME_TIMEOUT_S,
) -> np.ndarray | None:
    """One properly decoded RGB frame at ``time_s`` (accurate seek), or None if there is none.

    Same sandbox as the main decode; a child that does not answer within
    ``timeout_s`` is killed (ProcessingError: the job is retried, not the input blamed).
    """
    settings = settings or Settings()
    w, h = size
    args = ["-hide_banner", "-nostdin", "-loglevel", "error", "-ss", f"{max(0.0, time_s):.6f}",
            *media_sandbox.input_options(), "-i", media_sandbox.input_spec(source), "-map", "0:v:0",
            "-frames:v", "1", "-vf", f"scale={w}:{h}:flags={SAMPLE_SCALE_FLAGS}",
            "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
    try:
        proc = media_sandbox.run(media_sandbox.FFMPEG, args, settings, timeout_s=timeout_s)
    except subprocess.TimeoutExpired:
        raise ProcessingError(f"{source}: ffmpeg did not return the frame at {time_s:.2f}s within {timeout_s:.0f}s") from None
    if proc.returncode != 0 or len(proc.stdout) < w * h * 3:
        return None
    return np.frombuffer(proc.stdout[: w * h * 3], np.uint8).reshape(h, w, 3).copy()
