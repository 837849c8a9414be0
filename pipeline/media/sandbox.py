"""How every ffprobe/ffmpeg child is started: one local file, supported containers, bounded resources.

ffmpeg picks a demuxer by content, and some demuxers open other inputs: an
HLS playlist or DASH manifest fetches its segments (any ``file://`` path,
any URL), a concat script lists files, image2 expands a name pattern into a
sequence. A tenant's upload must never make the worker read another
tenant's file or reach the network, so every input is opened with

* ``-protocol_whitelist file``: only the local file protocol, and the input
  is always named ``file:/abs/path`` (names may start with ``-`` or hold ``:``);
* ``-format_whitelist``: only the containers vidx supports (a nested open by
  any of them, e.g. an MP4 data reference, inherits both lists);

and each child runs under an address-space and a CPU-time limit, so a
hostile file that makes a demuxer or decoder balloon fails instead of
exhausting the worker.

Every spawn goes through :func:`run` or :func:`start` here. The limits are
part of the exec'd command line (util-linux ``prlimit ... -- ffmpeg ...``:
prlimit sets them on itself, then execs ffmpeg in the same process), so no
Python runs between fork and exec: a Python pre-exec callback would force a
plain fork and run at-fork hooks in the child, which deadlocks when another
thread (a model loading, a decoder) held a lock at the moment of the fork.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.config import Settings
from pipeline.core.errors import ProcessingError

# The programs, named once (tests point them at stand-ins).
FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
PRLIMIT = "prlimit"
# The hard CPU limit lies this far above the soft one: SIGXCPU first, SIGKILL if that is ignored.
CPU_GRACE_S = 5

# Demuxer names (ffmpeg -demuxers) of the containers vidx indexes.
SUPPORTED_FORMATS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2",  # the ISO-BMFF / QuickTime family
    "matroska", "webm",
    "avi",
    "mpegts",
    "flv",
    "ogg",
    "mpeg",  # MPEG program stream
    "asf",
    # raw elementary video streams: one file, no container, nothing to follow
    "h264", "hevc", "mpegvideo", "m4v",
)
# Single-file formats a header probe may recognise only to refuse them by name
# (a still picture, a text file); they never reach decoding.
STILL_IMAGE_FORMATS = ("png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")
TEXT_FORMATS = ("tty", "bin", "xbin", "adf", "idf")
RECOGNISED_ONLY_FORMATS = STILL_IMAGE_FORMATS + TEXT_FORMATS
ALLOWED_PROTOCOLS = "file"

_NOT_ON_WHITELIST = re.compile(r"\[([\w-]+)(?:,[\w,-]+)? @ [^\]]+\] Format not on whitelist")


def input_spec(path: Path) -> str:
    """The one input ffmpeg may read: an absolute ``file:`` name."""
    return "file:" + os.path.abspath(path)


def input_options(*, recognise_only: bool = False) -> list[str]:
    """ffmpeg/ffprobe options to put before ``-i``: the protocol and container whitelists.

    ``recognise_only`` adds formats that are refused later with a specific
    reason (only the header probe uses it).
    """
    formats = SUPPORTED_FORMATS + (RECOGNISED_ONLY_FORMATS if recognise_only else ())
    return ["-protocol_whitelist", ALLOWED_PROTOCOLS, "-format_whitelist", ",".join(formats)]


def refused_format(stderr: str) -> str | None:
    """The demuxer ffmpeg refused because it is not on the whitelist (``hls``, ``concat``...), or None."""
    match = _NOT_ON_WHITELIST.search(stderr)
    return match.group(1) if match else None


def refused_format_reason(path: Path, demuxer: str) -> str:
    """One line saying why a file in a format vidx does not read is refused."""
    kind = {
        "hls": "an HLS playlist",
        "dash": "a DASH manifest",
        "concat": "a concat script",
        "image2": "an image sequence",
    }.get(demuxer, f"the {demuxer} format")
    return (
        f"{path}: not a supported video container ({kind}); vidx reads mp4/mov, matroska/webm, avi, "
        "mpegts, flv, ogg, mpeg-ps and asf files, never playlists, manifests, scripts or image sequences"
    )


def limit_options(settings: Settings) -> list[str]:
    """prlimit's options: address space ``VIDX_FFMPEG_MEMORY_MB``, CPU seconds ``VIDX_FFMPEG_CPU_S`` (soft:hard), no core."""
    memory = settings.ffmpeg_memory_mb * 1024 * 1024
    cpu = settings.ffmpeg_cpu_s
    return [f"--as={memory}", f"--cpu={cpu}:{cpu + CPU_GRACE_S}", "--core=0"]


def limited_command(program: str, args: Sequence[str], settings: Settings) -> list[str]:
    """The command line that runs ``program`` (``FFMPEG``, ``FFPROBE``) with ``args`` under the limits.

    Raises ProcessingError when ``program`` or prlimit is not installed: the
    machine's fault, not the video's, so the job is retried elsewhere.
    """
    return [_executable(PRLIMIT, "util-linux"), *limit_options(settings), "--", _executable(program, "ffmpeg"),
            *args]


def run(
    program: str, args: Sequence[str], settings: Settings, *, timeout_s: float, text: bool = False
) -> subprocess.CompletedProcess:
    """Run ``program`` sandboxed to the end, capturing its output (``subprocess.TimeoutExpired`` after ``timeout_s``)."""
    return subprocess.run(limited_command(program, args, settings), capture_output=True, text=text,
                          timeout=timeout_s, stdin=subprocess.DEVNULL)


def start(
    program: str, args: Sequence[str], settings: Settings, *, text: bool = False, pass_fds: Sequence[int] = ()
) -> subprocess.Popen:
    """Start ``program`` sandboxed with piped stdout and stderr (and ``pass_fds`` kept open in it)."""
    return subprocess.Popen(limited_command(program, args, settings), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, pass_fds=tuple(pass_fds))


def _executable(program: str, package: str) -> str:
    """``program``'s path (looked up on PATH unless it holds a slash), or ProcessingError naming the package."""
    found = shutil.which(program)
    if found is None:
        raise ProcessingError(f"{Path(program).name} not found ({program}); install {package}")
    return found
