"""Hostile media for the security tests (issue 10), made with real ffmpeg.

Each maker writes ``path`` and returns it. Kept apart from badmedia.py: these
are attacks (files that try to read other files, lie about their size or
length), not accidents.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.videogen import SOURCES, run_ffmpeg


def make_hls_playlist(path: Path, target: Path) -> Path:
    """A ~150-byte HLS playlist (any file name) whose one segment is another file on the worker."""
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n"
        f"file://{target.resolve()}\n#EXT-X-ENDLIST\n"
    )
    return path


def make_self_referencing_playlist(path: Path) -> Path:
    """A ~50-byte master playlist whose only variant is itself (unbounded recursion when followed)."""
    path.write_text(f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{path.name}\n")
    return path


def make_dash_manifest(path: Path, target: Path) -> Path:
    """A DASH manifest whose one segment is another file on the worker."""
    path.write_text(
        '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        'mediaPresentationDuration="PT4S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:full:2011">'
        '<Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000">'
        f"<BaseURL>file://{target.resolve()}</BaseURL></Representation></AdaptationSet></Period></MPD>\n"
    )
    return path


def make_concat_script(path: Path, target: Path) -> Path:
    """An ffconcat script listing another file on the worker."""
    path.write_text(f"ffconcat version 1.0\nfile '{target.resolve()}'\n")
    return path


def make_spliced_timestamps(path: Path, copies: int = 50, seconds: float = 4.0) -> Path:
    """``copies`` x ``seconds`` of video whose timestamps restart each time: the file claims ``seconds``."""
    segment = path.with_name(path.name + ".segment.ts")
    run_ffmpeg(["-f", "lavfi", "-i", SOURCES[0].format(w=64, h=36, fps=25), "-t", str(seconds),
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-f", "mpegts", str(segment)])
    data = segment.read_bytes()
    segment.unlink()
    path.write_bytes(data * copies)
    return path


def make_growing_frames(path: Path, small: tuple[int, int], large: tuple[int, int]) -> Path:
    """An MPEG-TS whose header (first frames) says ``small`` and whose later frames are ``large``."""
    parts = []
    for i, (w, h) in enumerate((small, large)):
        part = path.with_name(f"{path.name}.{i}.ts")
        run_ffmpeg(["-f", "lavfi", "-i", SOURCES[i].format(w=w, h=h, fps=25), "-t", "1",
                    "-c:v", "libx264", "-preset", "ultrafast", "-output_ts_offset", str(i),  # one timeline
                    "-f", "mpegts", str(part)])
        parts.append(part)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    for part in parts:
        part.unlink()
    return path


def make_high_frame_rate(path: Path, fps: int = 1000, frames: int = 400) -> Path:
    """``frames`` tiny frames at ``fps``: a frame flood in a short file."""
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=32x18:rate={fps}", "-frames:v", str(frames),
                "-c:v", "mjpeg", "-f", "matroska", str(path)])
    return path


def make_lying_avi(path: Path, frames: int = 68, claimed: int = 444) -> Path:
    """An old-style Cinepak AVI holding ``frames`` whose headers claim ``claimed`` (avih and strh)."""
    run_ffmpeg(["-f", "lavfi", "-i", SOURCES[0].format(w=160, h=120, fps=15), "-frames:v", str(frames),
                "-c:v", "cinepak", "-f", "avi", str(path)])
    data = bytearray(path.read_bytes())
    avih = data.find(b"avih")
    strh = data.find(b"strh")
    if avih < 0 or strh < 0:
        raise RuntimeError(f"no AVI headers in {path}")
    struct.pack_into("<I", data, avih + 8 + 16, claimed)  # MainAVIHeader.dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, claimed)  # AVIStreamHeader.dwLength
    path.write_bytes(bytes(data))
    return path
