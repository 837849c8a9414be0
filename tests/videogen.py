"""Test videos made with ffmpeg, where every cut's frame is known.

Each video is a list of ``Shot``s (a lavfi source and a length in frames)
encoded at a constant frame rate, so shot ``i`` starts at the sum of the
lengths before it. Kept dependency-free (ffmpeg only) so bench/ can use it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Visually distinct lavfi sources; {w}x{h} and {fps} are filled in.
SOURCES = [
    "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot=size={w}x{h}:rate={fps}",
    "smptebars=size={w}x{h}:rate={fps}",
    "rgbtestsrc=size={w}x{h}:rate={fps}",
    "cellauto=size={w}x{h}:rate={fps}:rule=110",
    "life=size={w}x{h}:rate={fps}:mold=10:ratio=0.3:death_color=#C83232:life_color=#00ff00",
    "color=c=0x2050c0:size={w}x{h}:rate={fps},drawbox=x=iw/4:y=ih/4:w=iw/2:h=ih/2:color=orange:t=fill",
    "gradients=size={w}x{h}:rate={fps}:speed=0.05",
]


@dataclass(frozen=True)
class Shot:
    """``frames`` frames of the lavfi ``source`` (a format string with {w} {h} {fps})."""

    source: str
    frames: int


def run_ffmpeg(args: list[str]) -> None:
    """Run ffmpeg quietly; raise with its stderr on failure."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{proc.stderr}")


def make_video(
    path: Path,
    shots: list[Shot],
    size: tuple[int, int] = (320, 180),
    fps: int = 25,
    codec: str = "libx264",
    extra: list[str] | None = None,
) -> Path:
    """Concatenate ``shots`` with hard cuts into one constant-frame-rate video."""
    w, h = size
    inputs: list[str] = []
    parts = []
    for i, shot in enumerate(shots):
        inputs += ["-f", "lavfi", "-i", shot.source.format(w=w, h=h, fps=fps)]
        parts.append(
            f"[{i}:v]trim=end_frame={shot.frames},setpts=PTS-STARTPTS,"
            f"scale={w}:{h},setsar=1,format=yuv420p,fps={fps}[v{i}]"
        )
    graph = ";".join(parts) + ";" + "".join(f"[v{i}]" for i in range(len(shots)))
    graph += f"concat=n={len(shots)}:v=1:a=0[out]"
    run_ffmpeg(
        [*inputs, "-filter_complex", graph, "-map", "[out]", "-c:v", codec, "-pix_fmt", "yuv420p",
         *(extra or []), str(path)]
    )
    return path


def make_cut_video(
    path: Path, scene_frames: list[int], size: tuple[int, int] = (320, 180), fps: int = 25
) -> Path:
    """Hard cuts only: scene ``i`` uses ``SOURCES[i % len(SOURCES)]`` for ``scene_frames[i]`` frames."""
    shots = [Shot(SOURCES[i % len(SOURCES)], n) for i, n in enumerate(scene_frames)]
    return make_video(path, shots, size=size, fps=fps)


def cut_frames(scene_frames: list[int]) -> list[int]:
    """First frame of every scene after the first (where the cuts are)."""
    out, total = [], 0
    for n in scene_frames[:-1]:
        total += n
        out.append(total)
    return out
