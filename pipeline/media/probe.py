"""Probe a video with ffprobe and refuse bad input before any decoding starts.

Two ffprobe calls, neither of which decodes the whole stream:

1. the header (``-show_format -show_streams``): codec, stored size,
   rotation, what the container promises (duration, frame count);
2. a demux-only pass over the packets (timestamps and flags only): how
   many frames the file really holds and will show, the real duration,
   whether the frame rate is variable, and whether the file ends early.

The second pass reads the whole file but decodes nothing; it is what
catches a truncated file whose index is intact (an MP4 with ``moov`` at the
front, cut in half), which no header check can see. Every refusal is a
:class:`BadInputError` with one line naming the file and the reason.
"""

from __future__ import annotations

import heapq
import json
import math
import stat
import statistics
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, ProcessingError
from pipeline.core.log import get_logger
from pipeline.core.types import ProbeResult
from pipeline.media import sandbox as media_sandbox

log = get_logger(__name__)

HEADER_TIMEOUT_S = 30.0
# The packet pass reads the whole file: allow for slow disks on big files.
PACKETS_BASE_TIMEOUT_S = 60.0
PACKETS_BYTES_PER_S = 20 * 1024 * 1024

# Demuxers that only ever hold one picture (or text rendered as one).
_STILL_IMAGE_FORMATS = set(media_sandbox.STILL_IMAGE_FORMATS)
_TEXT_FORMATS = set(media_sandbox.TEXT_FORMATS)
# Packets of presentation-order slack (B-frame reordering) before a time counts as going back.
_REORDER_WINDOW = 16
# Frame intervals kept (a deterministic sample) for the median and the VFR test.
_DELTA_SAMPLE = 4096
_STDERR_LINES = 20
# More frames than this share whose time repeats or goes back: spliced or forged timestamps.
_BACKWARDS_SHARE = 0.01
# A file holding less than this share of the frames its header promises is truncated.
_TRUNCATED_SHARE = 0.9
# Frame intervals deviating this much from the median count as irregular ...
_VFR_DEVIATION = 0.25
# ... and this share of irregular intervals makes the stream variable-rate.
_VFR_SHARE = 0.05


@dataclass(frozen=True)
class _Packets:
    """What the demux-only pass saw for the video stream (bounded memory, whatever the length)."""

    count: int  # frames that will be shown (edit-list discarded packets left out)
    total: int  # every packet the file holds
    first_time: float | None  # earliest presentation (or decode) time, seconds
    last_time: float | None  # latest one
    deltas: list[float]  # a bounded sample of intervals between frames in presentation order
    last_duration: float  # display duration of the last packet, seconds (0 if unknown)
    duration_sum: float  # sum of the shown packets' own durations (0 for unknown ones)
    unknown_durations: int  # shown packets without a duration
    backwards: int  # frames whose time repeats or goes back (spliced/forged timestamps)
    file_end: float | None  # where the last packet of any stream ends, seconds
    stderr: str


def probe(source: Path, settings: Settings) -> ProbeResult:
    """Describe ``source``'s video stream, or raise :class:`BadInputError` saying why it is unusable.

    ``ProcessingError`` is raised only when ffprobe itself cannot be run or
    does not finish in time (the input might still be fine).
    """
    path = Path(source)
    _check_file(path)
    header = _read_header(path, settings)
    stream = _video_stream(path, header)
    width, height = _dimensions(path, stream, settings)
    codec = stream.get("codec_name") or ""
    if not codec or codec == "none":
        raise BadInputError(f"{path}: unsupported or corrupt video stream (ffprobe found no codec)")
    rotation = _rotation(stream)

    packets = _read_packets(path, int(stream["index"]), settings)
    promised_frames = _int_or_none(stream.get("nb_frames"))
    header_duration = _header_duration(stream, header)
    header_fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))

    if packets.count == 0:
        raise BadInputError(f"{path}: video stream holds no frames (truncated or corrupt)")
    if packets.count == 1:
        raise BadInputError(f"{path}: a single still image, not a video")
    _check_truncation(path, packets, promised_frames, header_duration)
    _check_timestamps(path, packets)

    duration = _duration(packets, header_duration, header_fps)
    if duration is None or duration <= 0:
        raise BadInputError(f"{path}: duration is unknown or zero")
    content_s = _content_duration(packets, duration)
    if content_s > settings.max_duration_s:
        raise BadInputError(
            f"{path}: duration {content_s:.0f}s is longer than the {settings.max_duration_s:.0f}s limit "
            "(VIDX_MAX_DURATION_S)"
        )
    fps = _fps(packets, duration, header_fps)
    if fps > settings.max_fps:
        raise BadInputError(
            f"{path}: frame rate {fps:.0f} fps is above the {settings.max_fps:.0f} fps limit (VIDX_MAX_FPS)"
        )
    variable = _is_variable_rate(packets.deltas, stream)
    result = ProbeResult(
        duration_s=duration,
        fps=fps,
        frame_count=packets.count,
        width=width,
        height=height,
        codec=codec,
        rotation=rotation,
        variable_frame_rate=variable,
    )
    log.debug("probed", source=str(path), **result.to_json(), variable_frame_rate=variable)
    return result


# --- the file itself ---------------------------------------------------------


def _check_file(path: Path) -> None:
    """Refuse what is not a readable, non-empty regular file, without running ffprobe."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except PermissionError:
        raise BadInputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadInputError(f"{path}: is a directory, not a video file")
    if not stat.S_ISREG(info.st_mode):
        raise BadInputError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise BadInputError(f"{path}: file is empty (0 bytes)")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise BadInputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


# --- running ffprobe -----------------------------------------------------------


def _ffprobe_args(path: Path, args: list[str], *, recognise_only: bool = False) -> list[str]:
    """ffprobe's arguments: read only ``path``, only through the containers vidx supports (media_sandbox)."""
    return ["-hide_banner", "-v", "error", *media_sandbox.input_options(recognise_only=recognise_only),
            *args, "-i", _input_arg(path)]


def _run_ffprobe(
    path: Path, args: list[str], timeout_s: float, settings: Settings, *, recognise_only: bool = False
) -> subprocess.CompletedProcess[str]:
    try:
        return media_sandbox.run(media_sandbox.FFPROBE, _ffprobe_args(path, args, recognise_only=recognise_only),
                                 settings, timeout_s=timeout_s, text=True)
    except subprocess.TimeoutExpired:
        raise ProcessingError(f"{path}: ffprobe did not finish within {timeout_s:.0f}s") from None
    except OSError as exc:
        raise ProcessingError(f"{path}: could not run ffprobe ({exc})") from None


def _input_arg(path: Path) -> str:
    """An ffprobe input that is always read as a local file (names may start with '-' or hold ':')."""
    return media_sandbox.input_spec(path)


def _ffprobe_reason(path: Path, stderr: str) -> str:
    """ffprobe's last complaint, as a short phrase without the file name or log prefixes."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "ffprobe could not read it"
    reason = lines[-1]
    prefix = f"{_input_arg(path)}: "
    if reason.startswith(prefix):
        reason = reason[len(prefix):]
    if "moov atom not found" in stderr:
        reason = "moov atom not found"
    return reason[:200]


def _starts_like_mp4(path: Path) -> bool:
    """Whether the file opens with an ISO-BMFF box, i.e. was meant to be an MP4/MOV."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    return len(head) == 8 and head[4:8] in {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}


def _read_header(path: Path, settings: Settings) -> dict[str, Any]:
    proc = _run_ffprobe(
        path, ["-print_format", "json", "-show_format", "-show_streams"], HEADER_TIMEOUT_S, settings,
        recognise_only=True,
    )
    if proc.returncode != 0:
        refused = media_sandbox.refused_format(proc.stderr)
        if refused:
            raise BadInputError(media_sandbox.refused_format_reason(path, refused))
        reason = _ffprobe_reason(path, proc.stderr)
        if "moov atom not found" in proc.stderr and _starts_like_mp4(path):
            raise BadInputError(f"{path}: truncated or incomplete MP4/MOV ({reason})")
        if "moov atom not found" in proc.stderr:
            raise BadInputError(f"{path}: not a video (unrecognised data)")
        raise BadInputError(f"{path}: not a video or unreadable ({reason})")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise ProcessingError(f"{path}: ffprobe printed unreadable output") from None
    fmt = data.get("format") or {}
    format_name = str(fmt.get("format_name") or "")
    if format_name in _TEXT_FORMATS:
        raise BadInputError(f"{path}: not a video (a text file)")
    if format_name in _STILL_IMAGE_FORMATS:
        raise BadInputError(f"{path}: a single still image, not a video")
    if proc.stderr.strip():
        log.debug("ffprobe_warnings", source=str(path), stderr=proc.stderr.strip()[-500:])
    return data


class _StderrTail(threading.Thread):
    """Drains a child's stderr (so it never blocks on a full pipe), keeping only the last lines."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: deque[str] = deque(maxlen=_STDERR_LINES)
        self.partial_file = False

    def run(self) -> None:
        for line in self.stream:
            self.partial_file = self.partial_file or "partial file" in line
            self.lines.append(line.rstrip())

    def text(self) -> str:
        tail = "\n".join(self.lines)
        return tail + ("\npartial file" if self.partial_file and "partial file" not in tail else "")


class _PacketCounter:
    """Folds the packet lines into :class:`_Packets` one at a time, in bounded memory.

    Presentation order is restored through a small reorder window (B-frames
    are never more than a few frames out of order); intervals are kept as an
    evenly spread sample of bounded size for the median and the VFR test.
    """

    def __init__(self, stream_index: int) -> None:
        self.wanted = str(stream_index)
        self.count = self.total = 0
        self.first: float | None = None
        self.last: float | None = None
        self.last_duration = 0.0
        self.duration_sum = 0.0
        self.unknown = 0
        self.backwards = 0
        self.file_end: float | None = None
        self._window: list[float] = []
        self._emitted: float | None = None
        self._deltas: list[float] = []
        self._seen_deltas = 0
        self._stride = 1

    def add(self, line: str) -> None:
        fields = (line.strip().split(",") + ["", "", "", "", ""])[:5]
        if not fields[0]:
            return
        pts, dts, dur = (_float_or_none(v) for v in fields[1:4])
        t = pts if pts is not None else dts
        if t is not None:
            end = t + (dur if dur and dur > 0 else 0.0)
            self.file_end = end if self.file_end is None else max(self.file_end, end)
        if fields[0] != self.wanted:
            return
        self.total += 1
        if "D" in fields[4]:  # before an edit list's start: demuxed, never shown
            return
        self.count += 1
        if dur is not None and dur > 0:
            self.last_duration = dur
            self.duration_sum += dur
        else:
            self.unknown += 1
        if t is not None:
            self.first = t if self.first is None else min(self.first, t)
            self.last = t if self.last is None else max(self.last, t)
            heapq.heappush(self._window, t)
            if len(self._window) > _REORDER_WINDOW:
                self._emit(heapq.heappop(self._window))

    def _emit(self, t: float) -> None:
        if self._emitted is not None:
            delta = t - self._emitted
            if delta <= 0:
                self.backwards += 1
            else:
                self._sample(delta)
        self._emitted = t if self._emitted is None else max(self._emitted, t)

    def _sample(self, delta: float) -> None:
        """Keep every ``stride``-th interval; when full, halve the sample and double the stride (even spread)."""
        self._seen_deltas += 1
        if self._seen_deltas % self._stride:
            return
        self._deltas.append(delta)
        if len(self._deltas) >= _DELTA_SAMPLE:
            del self._deltas[1::2]
            self._stride *= 2

    def result(self, stderr: str) -> _Packets:
        while self._window:
            self._emit(heapq.heappop(self._window))
        return _Packets(
            count=self.count, total=self.total, first_time=self.first, last_time=self.last, deltas=self._deltas,
            last_duration=self.last_duration, duration_sum=self.duration_sum, unknown_durations=self.unknown,
            backwards=self.backwards, file_end=self.file_end, stderr=stderr,
        )


def _read_packets(path: Path, stream_index: int, settings: Settings) -> _Packets:
    """Demux (no decoding) every packet and fold the video stream's timestamps as they stream past.

    Other streams' packets are read too, only for where the file really ends.
    Memory stays flat for any packet count; a file holding more than
    ``VIDX_MAX_FRAMES`` frames is refused as soon as the count passes it.
    """
    size = path.stat().st_size
    timeout = PACKETS_BASE_TIMEOUT_S + size / PACKETS_BYTES_PER_S
    args = _ffprobe_args(
        path, ["-show_entries", "packet=stream_index,pts_time,dts_time,duration_time,flags", "-print_format", "csv=p=0"]
    )
    try:
        proc = media_sandbox.start(media_sandbox.FFPROBE, args, settings, text=True)
    except OSError as exc:
        raise ProcessingError(f"{path}: could not run ffprobe ({exc})") from None
    assert proc.stdout is not None and proc.stderr is not None
    stderr = _StderrTail(proc.stderr)
    stderr.start()
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    counter = _PacketCounter(stream_index)
    too_many = False
    try:
        for line in proc.stdout:
            counter.add(line)
            if counter.total > settings.max_frames:
                too_many = True
                break
    finally:
        timed_out = not watchdog.is_alive() and not too_many
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        stderr.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    if too_many:
        raise BadInputError(
            f"{path}: holds more than {settings.max_frames} frames (VIDX_MAX_FRAMES)"
        )
    if timed_out and code != 0:
        raise ProcessingError(f"{path}: ffprobe did not finish within {timeout:.0f}s")
    packets = counter.result(stderr.text())
    if code != 0 and packets.total == 0:
        raise BadInputError(f"{path}: video stream cannot be read ({_ffprobe_reason(path, packets.stderr)})")
    return packets


# --- reading the header --------------------------------------------------------


def _video_stream(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    streams = header.get("streams") or []
    video = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not video:
        kinds = sorted({str(s.get("codec_type")) for s in streams if s.get("codec_type")})
        if "audio" in kinds:
            raise BadInputError(f"{path}: no video stream (audio only)")
        what = ", ".join(kinds) if kinds else "no streams at all"
        raise BadInputError(f"{path}: no video stream ({what})")
    # The default stream when flagged, else the first: what ffmpeg would pick for a plain decode.
    defaults = [s for s in video if (s.get("disposition") or {}).get("default")]
    return (defaults or video)[0]


def _dimensions(path: Path, stream: dict[str, Any], settings: Settings) -> tuple[int, int]:
    width = _int_or_none(stream.get("width")) or 0
    height = _int_or_none(stream.get("height")) or 0
    if width <= 0 or height <= 0:
        raise BadInputError(f"{path}: video stream has no usable frame size ({width}x{height}; corrupt?)")
    if max(width, height) > settings.max_dimension:
        raise BadInputError(
            f"{path}: frame size {width}x{height} exceeds the {settings.max_dimension}px limit (VIDX_MAX_DIMENSION)"
        )
    return width, height


def _rotation(stream: dict[str, Any]) -> int:
    """Clockwise degrees (0/90/180/270) to turn a stored frame to display it upright.

    The display matrix's ``rotation`` is counter-clockwise, hence the sign flip;
    the legacy ``rotate`` tag is already clockwise.
    """
    degrees: float | None = None
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            value = _float_or_none(side.get("rotation"))
            if value is not None:
                degrees = -value
                break
    if degrees is None:
        degrees = _float_or_none((stream.get("tags") or {}).get("rotate"))
    if degrees is None or not math.isfinite(degrees):
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def _header_duration(stream: dict[str, Any], header: dict[str, Any]) -> float | None:
    for value in (stream.get("duration"), (header.get("format") or {}).get("duration")):
        duration = _float_or_none(value)
        if duration is not None and math.isfinite(duration) and duration > 0:
            return duration
    return None


# --- what the packets say -------------------------------------------------------


def _check_truncation(
    path: Path,
    packets: _Packets,
    promised_frames: int | None,
    header_duration: float | None,
) -> None:
    """A file whose demuxing stops with errors short of what its header promises was cut short.

    Headers lie (an old AVI's frame count especially), so a shortfall alone
    is no reason to refuse a file that demuxes cleanly to its end: the decode
    then says whether it is whole.
    """
    if "partial file" in packets.stderr:
        raise BadInputError(f"{path}: truncated (the file ends before the data its index lists)")
    if not packets.stderr.strip():
        return
    if promised_frames and packets.total < _TRUNCATED_SHARE * promised_frames:
        raise BadInputError(
            f"{path}: truncated (header promises {promised_frames} frames, the file holds {packets.total})"
        )
    if promised_frames is None and header_duration and packets.file_end is not None:
        # Every stream's packets counted (audio often outlasts video); only a
        # shortfall well beyond container rounding and late starts counts.
        if packets.file_end < _TRUNCATED_SHARE * header_duration - 1.0:
            raise BadInputError(
                f"{path}: truncated (header says {header_duration:.1f}s, the file holds {packets.file_end:.1f}s)"
            )


def _check_timestamps(path: Path, packets: _Packets) -> None:
    """Refuse frames whose times repeat or run backwards: a spliced or forged timeline hides its length."""
    if packets.backwards > max(2, _BACKWARDS_SHARE * packets.count):
        raise BadInputError(
            f"{path}: timestamps repeat or go backwards ({packets.backwards} of {packets.count} frames; "
            "spliced or corrupt stream)"
        )


def _typical_step(packets: _Packets) -> float:
    return statistics.median(packets.deltas) if packets.deltas else 0.0


def _duration(packets: _Packets, header_duration: float | None, header_fps: float | None) -> float | None:
    """The span the frames really cover; the header's figure when timestamps are missing."""
    if packets.first_time is not None and packets.last_time is not None and packets.deltas:
        step = packets.last_duration if packets.last_duration > 0 else _typical_step(packets)
        span = packets.last_time - packets.first_time + step
        if span > 0:
            return span
    if header_duration:
        return header_duration
    if header_fps:
        return packets.count / header_fps
    return None


def _content_duration(packets: _Packets, duration: float) -> float:
    """How long the frames play for: never less than the sum of their own durations.

    Repeated timestamps can squeeze a long video into a short span; the
    packets' durations (a typical interval for those without one) cannot.
    """
    summed = packets.duration_sum + packets.unknown_durations * _typical_step(packets)
    return max(duration, summed)


def _fps(packets: _Packets, duration: float, header_fps: float | None) -> float:
    """The header's average rate when it is plausible, else frames over duration."""
    measured = packets.count / duration
    if header_fps and header_fps > 0 and abs(header_fps - measured) <= 0.1 * measured:
        return header_fps
    return measured


def _is_variable_rate(deltas: list[float], stream: dict[str, Any]) -> bool:
    """Variable when a noticeable share of frame intervals (a sample of them) differ from the typical one."""
    if len(deltas) >= 2:
        typical = statistics.median(deltas)
        irregular = sum(1 for d in deltas if abs(d - typical) > _VFR_DEVIATION * typical)
        return irregular > max(1, _VFR_SHARE * len(deltas))
    r_rate = _rate(stream.get("r_frame_rate"))
    avg_rate = _rate(stream.get("avg_frame_rate"))
    return bool(r_rate and avg_rate and abs(r_rate - avg_rate) > 0.05 * avg_rate)


# --- parsing helpers -------------------------------------------------------------


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _rate(value: Any) -> float | None:
    """'30000/1001' -> 29.97; None for '0/0' and other non-rates."""
    if not value or not isinstance(value, str):
        return None
    num, _, den = value.partition("/")
    try:
        rate = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return rate if math.isfinite(rate) and rate > 0 else None
