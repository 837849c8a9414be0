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
    "cellauto=size={w}x{h}:rate={fps}:rule=110:seed=1",
    "life=size={w}x{h}:rate={fps}:seed=1:mold=10:ratio=0.3:death_color=#C83232:life_color=#00ff00",
    "color=c=0x2050c0:size={w}x{h}:rate={fps},drawbox=x=iw/4:y=ih/4:w=iw/2:h=ih/2:color=orange:t=fill",
    "gradients=size={w}x{h}:rate={fps}:speed=0.05:seed=1",
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


def _shot_inputs(shots: list[Shot], w: int, h: int, fps: int, tail: str = "") -> tuple[list[str], list[str]]:
    """ffmpeg inputs and per-shot filter chains ``[vi]`` (trimmed, scaled, constant rate)."""
    inputs: list[str] = []
    parts: list[str] = []
    for i, shot in enumerate(shots):
        inputs += ["-f", "lavfi", "-i", shot.source.format(w=w, h=h, fps=fps)]
        parts.append(
            f"[{i}:v]trim=end_frame={shot.frames},setpts=PTS-STARTPTS,"
            f"scale={w}:{h},setsar=1,format=yuv420p,fps={fps}{tail}[v{i}]"
        )
    return inputs, parts


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
    inputs, parts = _shot_inputs(shots, w, h, fps)
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


# --- timelines with gradual transitions and in-shot events -------------------------------------
#
# A timeline is a list of shots joined by transitions: a hard cut, a dissolve
# (xfade=dissolve) or a fade through black (xfade=fadeblack). In-shot events
# that are NOT boundaries (a flash, a fast pan, an occluding object) are
# built into a shot's source with the helpers below. ``make_timeline`` returns
# the ground truth: for every boundary the range of frames inside which a
# detector may place it.


@dataclass(frozen=True)
class Transition:
    """How a shot joins the previous one: ``cut``, ``dissolve``, ``fade`` (through black) or any ffmpeg xfade name.

    xfade names give wipes (``wipeleft``), slides/pushes (``slideup``),
    shapes (``circleopen``, ``radial``), fades through white (``fadewhite``), ...
    """

    kind: str = "cut"
    frames: int = 0  # length of a gradual transition in frames (0 for a cut)


CUT = Transition()


@dataclass(frozen=True)
class Boundary:
    """A true scene boundary: any start frame in ``first..last`` (inclusive) is right.

    For a hard cut ``first == last`` == the first frame of the new shot.
    """

    kind: str
    first: int
    last: int


def with_flash(source: str, at_frame: int, frames: int = 1, color: str = "white") -> str:
    """``source`` with a ``frames``-long full-frame flash (camera flash, lightning) at ``at_frame``."""
    end = at_frame + frames - 1
    return f"{source},drawbox=x=0:y=0:w=iw:h=ih:color={color}:t=fill:enable='between(n,{at_frame},{end})'"


def with_pan(source: str, seconds_per_sweep: float = 2.0) -> str:
    """A fast horizontal camera pan: a 2x enlarged ``source`` scrolled under a fixed-size crop."""
    return (
        f"{source},scale=iw*2:ih*2,"
        f"crop=w=iw/2:h=ih/2:x='(iw/2)*abs(mod(t/{seconds_per_sweep}+1,2)-1)':y='ih/4'"
    )


def with_occluder(source: str, start_s: float, pass_s: float = 0.6, color: str = "0x202020") -> str:
    """An object (a dark box half the frame wide) crossing in front of the camera."""
    return (
        f"{source},drawbox=w=iw/2:h=ih:y=0:color={color}:t=fill:"
        f"x='-iw/2+(t-{start_s})*1.5*iw/{pass_s}':enable='between(t,{start_s},{start_s + pass_s})'"
    )


def with_light_step(source: str, at_frame: int, brightness: float = 0.25, warm: bool = True) -> str:
    """A light switched on at ``at_frame``: a sudden exposure (and colour temperature) step, same picture."""
    on = f"enable='gte(n,{at_frame})'"
    tint = f",colorchannelmixer=rr=1.15:bb=0.8:{on}" if warm else ""
    return f"{source},eq=brightness={brightness}:contrast=1.1:{on}{tint}"


def with_shake(source: str, amplitude: float = 0.06) -> str:
    """A hand-held camera: ``source`` enlarged and cropped at an irregular, jerky offset every frame.

    ``amplitude`` is the largest offset as a share of the frame size.
    """
    a = amplitude
    jitter = "(sin(n*0.9)*0.5+sin(n*2.3+1)*0.3+sin(n*5.1+2)*0.2)"
    jitter_y = "(sin(n*1.1+3)*0.5+sin(n*2.9)*0.3+sin(n*4.7+1)*0.2)"
    return (f"{source},scale=iw*{1 + 2 * a:.3f}:ih*{1 + 2 * a:.3f},"
            f"crop=w=iw/{1 + 2 * a:.3f}:h=ih/{1 + 2 * a:.3f}:"
            f"x='(iw-ow)/2*(1+{jitter})':y='(ih-oh)/2*(1+{jitter_y})'")


def with_zoom(source: str, start_frame: int, frames: int, factor: float = 2.5, out: bool = True) -> str:
    """A fast zoom (out by default) by ``factor`` over ``frames`` frames starting at ``start_frame``."""
    ramp = f"clip((in-{start_frame})/{frames},0,1)"
    z = f"{factor}-({factor}-1)*{ramp}" if out else f"1+({factor}-1)*{ramp}"
    return (f"{source},zoompan=z='{z}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:s={{w}}x{{h}}:fps={{fps}}")


def with_whip_pan(source: str, start_frame: int, frames: int = 6) -> str:
    """A whip pan: the camera swings across a wide view in ``frames`` frames (with motion blur), then holds."""
    ramp = f"clip((n-{start_frame})/{frames},0,1)"
    return (f"{source},scale=iw*3:ih,crop=w=iw/3:h=ih:x='(iw-ow)*{ramp}':y=0,tmix=frames=3")


def photo_source(path: Path | str, scale: float = 1.0) -> str:
    """A lavfi source that shows the still picture at ``path`` forever (film it with the camera helpers)."""
    return (f"movie='{path}',loop=loop=-1:size=1,setpts=N/{{fps}}/TB,format=rgb24,"
            f"scale={{w}}*{scale:g}:{{h}}*{scale:g}")


def make_timeline(
    path: Path,
    shots: list[Shot],
    transitions: list[Transition] | None = None,
    size: tuple[int, int] = (320, 180),
    fps: int = 25,
    codec: str = "libx264",
    extra: list[str] | None = None,
) -> tuple[Path, list[Boundary], int]:
    """Join ``shots`` with ``transitions`` (``transitions[i]`` joins shot i+1 to shot i).

    Returns (path, boundaries, total frame count). A gradual transition of
    ``n`` frames overlaps the two shots by ``n`` frames (xfade), so it
    shortens the video by ``n``.
    """
    transitions = transitions or [CUT] * (len(shots) - 1)
    if len(transitions) != len(shots) - 1:
        raise ValueError("need one transition between each pair of shots")
    w, h = size
    inputs, parts = _shot_inputs(shots, w, h, fps, tail=f",settb=1/{fps}")
    boundaries: list[Boundary] = []
    label, length = "v0", shots[0].frames
    for i, (shot, tr) in enumerate(zip(shots[1:], transitions, strict=True), start=1):
        out = f"j{i}"
        if tr.kind == "cut":
            parts.append(f"[{label}][v{i}]concat=n=2:v=1:a=0,settb=1/{fps},setpts=N[{out}]")
            boundaries.append(Boundary("cut", length, length))
            length += shot.frames
        else:
            kind = {"dissolve": "dissolve", "fade": "fadeblack"}.get(tr.kind, tr.kind)
            offset = length - tr.frames
            parts.append(
                f"[{label}][v{i}]xfade=transition={kind}:duration={tr.frames / fps}:"
                f"offset={offset / fps},setpts=N[{out}]"
            )
            # xfade rounds to the frame grid; allow one frame either side.
            boundaries.append(Boundary(tr.kind, max(0, offset - 1), offset + tr.frames + 1))
            length += shot.frames - tr.frames
        label = out
    # setpts=N keeps timestamps gapless, so the muxer never duplicates a frame.
    run_ffmpeg(
        [*inputs, "-filter_complex", ";".join(parts), "-map", f"[{label}]", "-c:v", codec,
         "-pix_fmt", "yuv420p", *(extra or []), str(path)]
    )
    return path, boundaries, length


def make_vfr_video(path: Path, parts: list[tuple[str, int, int]], size: tuple[int, int] = (160, 90)) -> Path:
    """Hard cuts between ``(source, frames, fps)`` parts at different frame rates, timestamps kept (VFR).

    Part ``i`` lasts ``frames / fps`` seconds, so its cut lands at the sum of the earlier durations.
    """
    w, h = size
    inputs: list[str] = []
    chains = []
    for i, (source, frames, fps) in enumerate(parts):
        inputs += ["-f", "lavfi", "-i", source.format(w=w, h=h, fps=fps)]
        chains.append(f"[{i}:v]trim=end_frame={frames},setpts=PTS-STARTPTS,scale={w}:{h},setsar=1,"
                      f"format=yuv420p,settb=1/1000[v{i}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(parts)))
    graph += f"concat=n={len(parts)}:v=1:a=0[out]"
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[out]", "-fps_mode", "vfr", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", "-video_track_timescale", "1000", str(path)])
    return path


def rotate_video(src: Path, dst: Path, degrees: int) -> Path:
    """A copy of ``src`` with display rotation metadata (stream copy, pixels untouched)."""
    run_ffmpeg(["-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(dst)])
    return dst


def probe_for_tests(path: Path) -> dict:
    """Just enough of ffprobe for tests that must not depend on pipeline.media.probe."""
    import json

    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
           "stream=width,height,avg_frame_rate,r_frame_rate,nb_read_packets,codec_name:stream_side_data=rotation"
           ":format=duration", "-of", "json", str(path)]
    data = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    stream = data["streams"][0]
    num, den = (stream.get("avg_frame_rate") or "0/1").split("/")
    fps = float(num) / float(den) if float(den) else 0.0
    rotation = 0
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            rotation = int(side["rotation"]) % 360
    return {"width": stream["width"], "height": stream["height"], "fps": fps,
            "frame_count": int(stream.get("nb_read_packets", 0)), "codec": stream.get("codec_name", ""),
            "duration_s": float(data.get("format", {}).get("duration", 0.0)), "rotation": rotation}
