"""Generators for every kind of bad input the product contract names.

Each ``make_*`` function writes (or removes) ``path`` and returns it. They
use real ffmpeg output, damaged the way real files get damaged (cut short,
overwritten, mislabelled), so probe, decode, worker and end-to-end tests all
see the same material. ``BAD_INPUTS`` lists them with the stage expected to
refuse each one: ``"probe"`` (refused before decoding, CLI exit 2 before
enqueue) or ``"decode"`` (only found while decoding; the scene detector
raises ``BadInputError``).

Kept dependency-free apart from ffmpeg so bench/ scripts can use it too.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.videogen import SOURCES, run_ffmpeg

_SIZE = "320x180"


def _encode(path: Path, seconds: float = 4.0, faststart: bool = True, source: str = SOURCES[0]) -> Path:
    """A small valid H.264 MP4 (video only, 25 fps), the raw material for damage."""
    args = ["-f", "lavfi", "-i", source.format(w=320, h=180, fps=25), "-t", str(seconds),
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    if faststart:
        args += ["-movflags", "+faststart"]
    run_ffmpeg([*args, "-f", "mp4", str(path)])
    return path


def make_valid(path: Path) -> Path:
    """A good 4 s 320x180 H.264 MP4, for contrast with the bad ones."""
    return _encode(path)


def make_missing(path: Path) -> Path:
    """A path where nothing exists."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    return path


def make_directory(path: Path) -> Path:
    """A directory where a video is expected."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_not_a_video(path: Path) -> Path:
    """A text file (whatever its name says)."""
    path.write_text("This is not a video.\nJust a few lines of text.\n" * 20)
    return path


def make_random_bytes(path: Path, size: int = 64 * 1024) -> Path:
    """Noise: no container, no stream."""
    path.write_bytes(random.Random(7).randbytes(size))
    return path


def make_still_image(path: Path) -> Path:
    """One PNG picture: an image, not a video (write it to a .png path, or any other name)."""
    run_ffmpeg(["-f", "lavfi", "-i", SOURCES[0].format(w=320, h=180, fps=25), "-frames:v", "1",
                "-c:v", "png", "-f", "image2", str(path)])
    return path


def make_single_frame(path: Path) -> Path:
    """An MP4 holding exactly one frame: a still in a video container."""
    run_ffmpeg(["-f", "lavfi", "-i", SOURCES[0].format(w=320, h=180, fps=25), "-frames:v", "1",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)])
    return path


def make_audio_only(path: Path) -> Path:
    """An M4A with a sine tone and no video stream."""
    run_ffmpeg(["-f", "lavfi", "-t", "2", "-i", "sine=frequency=440", "-c:a", "aac", "-f", "mp4", str(path)])
    return path


def _first_half_of(path: Path, faststart: bool) -> Path:
    """Encode a valid MP4, then keep only its first half at ``path``."""
    tmp = path.with_name(path.name + ".whole.mp4")
    _encode(tmp, faststart=faststart)
    data = tmp.read_bytes()
    tmp.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_truncated(path: Path) -> Path:
    """An MP4 cut in half whose index (moov, at the front) still lists every frame."""
    return _first_half_of(path, faststart=True)


def make_truncated_no_index(path: Path) -> Path:
    """An MP4 cut in half before its index (moov at the end, as a recording cut off)."""
    return _first_half_of(path, faststart=False)


def make_corrupt(path: Path) -> Path:
    """A valid MP4 with a quarter of its frame data overwritten by noise, in the middle.

    The header is intact, so probing passes; decoding hits garbage.
    """
    tmp = path.with_name(path.name + ".whole.mp4")
    _encode(tmp, seconds=4.0, faststart=True)
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    mdat = data.find(b"mdat")
    payload = len(data) - mdat
    start = mdat + payload // 3
    length = payload // 4
    data[start : start + length] = random.Random(11).randbytes(length)
    path.write_bytes(bytes(data))
    return path


def make_huge_dimensions(path: Path, width: int = 16000, height: int = 9000) -> Path:
    """A tiny Matroska file whose header claims a ``width`` x ``height`` picture.

    Encoding a real 16000x9000 stream would take gigabytes of memory, so a
    small raw-video stream is written and the size fields of its header are
    rewritten. Sizes beyond what FFmpeg accepts at all (about 16000x16000)
    read back as 0x0, which probe refuses as well.
    """
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=gray:size=320x256:rate=5", "-frames:v", "3",
                "-c:v", "rawvideo", "-pix_fmt", "gray", "-f", "matroska", str(path)])
    data = bytearray(path.read_bytes())
    # EBML PixelWidth (0xB0) / PixelHeight (0xBA), each a 2-byte unsigned integer here.
    for element_id, old, new in ((0xB0, 320, width), (0xBA, 256, height)):
        marker = bytes([element_id, 0x82]) + old.to_bytes(2, "big")
        at = data.find(marker)
        if at < 0 or not 0 < new < 65536:
            raise RuntimeError(f"cannot rewrite the frame size in {path}")
        data[at + 2 : at + 4] = new.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def make_absurd_duration(path: Path, seconds: float = 8 * 3600.0) -> Path:
    """Three real frames spread over ``seconds``: a timeline far longer than any sane limit."""
    gap = seconds / 2
    run_ffmpeg(["-f", "lavfi", "-i", SOURCES[0].format(w=160, h=90, fps=25), "-frames:v", "3",
                "-vf", f"settb=1/1000,setpts=N*{gap * 1000:.0f}", "-fps_mode", "passthrough",
                "-c:v", "libx264", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)])
    return path


def make_unreadable(path: Path) -> Path:
    """A valid video without read permission (root can still read it: skip such tests as root)."""
    if path.exists():
        os.chmod(path, 0o600)
    _encode(path, seconds=1.0)
    os.chmod(path, 0)
    return path


def make_variable_frame_rate(path: Path) -> Path:
    """Not bad input: 50 frames at 25 fps then 50 at 10 fps, with real timestamps (VFR)."""
    run_ffmpeg(["-f", "lavfi", "-i", SOURCES[0].format(w=320, h=180, fps=25), "-frames:v", "100",
                "-vf", "settb=1/1000,setpts=N*40+gte(N\\,50)*(N-50)*60", "-fps_mode", "passthrough",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", str(path)])
    return path


# kind -> (maker, stage that refuses it, suggested file name)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "missing": (make_missing, "probe", "missing.mp4"),
    "directory": (make_directory, "probe", "a_directory.mp4"),
    "zero_bytes": (make_zero_bytes, "probe", "empty.mp4"),
    "not_a_video": (make_not_a_video, "probe", "notes.mp4"),
    "random_bytes": (make_random_bytes, "probe", "noise.mp4"),
    "still_image": (make_still_image, "probe", "picture.png"),
    "single_frame": (make_single_frame, "probe", "one_frame.mp4"),
    "audio_only": (make_audio_only, "probe", "tone.m4a"),
    "truncated": (make_truncated, "probe", "cut_in_half.mp4"),
    "truncated_no_index": (make_truncated_no_index, "probe", "cut_no_moov.mp4"),
    "huge_dimensions": (make_huge_dimensions, "probe", "huge.mkv"),
    "absurd_duration": (make_absurd_duration, "probe", "eight_hours.mp4"),
    "corrupt": (make_corrupt, "decode", "corrupt.mp4"),
    # Only meaningful when not running as root (root reads it anyway): filter it out there.
    "unreadable": (make_unreadable, "probe", "locked.mp4"),
}


def make_bad_input(kind: str, directory: Path) -> Path:
    """Write the ``kind`` of bad input into ``directory`` under its suggested name."""
    maker, _stage, name = BAD_INPUTS[kind]
    return maker(directory / name)
