"""What the reference-frame detection pass needs besides the decode itself.

Most frames of an H.264/HEVC stream with B-frames are B-frames (about two
thirds with x264 defaults) and no other frame depends on them, so the
decoder can skip them (``-skip_frame bidir``) and still decode every I-
and P-frame exactly. Detection then runs on those reference frames, and
each boundary found between two of them is placed on its exact frame:

* the packet index (a demux-only ffprobe pass, no decoding) gives every
  frame's timestamp in display order, so decoded reference frames map to
  their display frame numbers, and which frames are keyframes;
* an encoder puts a keyframe on a hard cut when it sees one (x264's
  scenecut), so a cut whose new shot starts on a keyframe is already
  exact; otherwise the few frames between the two reference frames are
  decoded (``decode_range``) and the cut is the largest change among them.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.config import Settings
from pipeline.media import sandbox as media_sandbox
from pipeline.media.decode import SHOWINFO_FILTER

_TIMEOUT_S = 600.0
_SHOWINFO_TIME = re.compile(r"\[Parsed_showinfo_\d+ @ [^\]]+\] n:\s*\d+ pts:\s*-?\d+\s+pts_time:(\S+)")


@dataclass(frozen=True)
class PacketIndex:
    """Every frame of the video stream in display order: timestamps (seconds) and keyframe flags."""

    times: np.ndarray
    keyframe: np.ndarray
    has_b_frames: bool

    def frame_of(self, times: np.ndarray, offset: float) -> np.ndarray:
        """Display frame numbers of decoded frames at ``times`` (decoder clock = packet clock - ``offset``)."""
        t = np.asarray(times, np.float64) + offset
        idx = np.clip(np.searchsorted(self.times, t), 1, len(self.times) - 1)
        nearer_left = np.abs(self.times[idx - 1] - t) <= np.abs(self.times[idx] - t)
        return np.where(nearer_left, idx - 1, idx)


def read_packet_index(source: Path, settings: Settings) -> PacketIndex | None:
    """The stream's packet index (demux only), or None when ffprobe cannot give one.

    Sandboxed like every ffprobe call (pipeline/media/sandbox.py): one file, whitelisted containers, rlimits.
    """
    args = ["-hide_banner", "-v", "error", *media_sandbox.input_options(), "-select_streams", "v:0",
            "-show_entries", "stream=has_b_frames:packet=pts_time,flags", "-of", "csv=p=0",
            media_sandbox.input_spec(source)]
    try:
        proc = media_sandbox.run(media_sandbox.FFPROBE, args, settings, timeout_s=_TIMEOUT_S, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    times, keys, has_b = [], [], False
    for line in proc.stdout.splitlines():
        parts = line.strip().split(",")
        if len(parts) == 1 and parts[0].isdigit():
            has_b = int(parts[0]) > 0
        elif len(parts) >= 2:
            try:
                times.append(float(parts[0]))
            except ValueError:
                return None  # a packet without a timestamp: cannot map frames, use the full decode
            keys.append("K" in parts[1])
    if len(times) < 2:
        return None
    order = np.argsort(times, kind="stable")
    return PacketIndex(np.asarray(times)[order], np.asarray(keys)[order], has_b)


def decode_range(
    source: Path, start_s: float, count: int, size: tuple[int, int], settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` consecutive frames from the one shown at ``start_s`` (packet clock), at ``size``: (frames, times).

    An accurate seek: ffmpeg decodes from the keyframe before ``start_s``
    and hands over frames from ``start_s`` on, with their packet timestamps.
    """
    w, h = size
    # One thread: it runs beside the segment decoders (pipeline/media/segments.py), which keep every core busy.
    args = ["-hide_banner", "-nostdin", "-loglevel", "info", "-threads", "1", "-copyts",
            "-ss", f"{max(0.0, start_s - 1e-3):.6f}", *media_sandbox.input_options(),
            "-i", media_sandbox.input_spec(source), "-map", "0:v:0", "-an", "-sn", "-dn",
            "-vf", f"scale={w}:{h}:flags=area,format=rgb24,{SHOWINFO_FILTER}", "-frames:v", str(count),
            "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]
    try:
        proc = media_sandbox.run(media_sandbox.FFMPEG, args, settings, timeout_s=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return np.zeros((0, h, w, 3), np.uint8), np.zeros(0)
    n = len(proc.stdout) // (w * h * 3)
    frames = np.frombuffer(proc.stdout[: n * w * h * 3], np.uint8).reshape(n, h, w, 3)
    found = _SHOWINFO_TIME.findall(proc.stderr.decode("utf-8", "replace"))
    times = np.array([float(t) for t in found[:n]] + [np.nan] * max(0, n - len(found)))
    return frames, times
