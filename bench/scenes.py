"""Scene detection benchmark: vidx vs PySceneDetect's AdaptiveDetector on one 1080p H.264 video.

    .venv/bin/python bench/scenes.py [--no-variants] [--rounds N]

Generates (once, cached in bench/.cache/) a ~3 minute 1080p x264 video
with known boundaries (hard cuts, dissolves, fades through black) and
non-boundaries (flashes, fast pans, occluders), then in the same run times:

* plain decoding, ``ffmpeg -i X -f null -`` (the floor);
* decode-only variants of the detection pass (what skipping deblocking or
  non-reference frames would save), unless --no-variants;
* vidx ``detect_scenes`` (boundaries and properly decoded candidates);
* PySceneDetect ``AdaptiveDetector`` with its defaults (OpenCV decoding);
* vidx with the experimental reference-frame pass (VIDX_SHOT_REFERENCE_PASS).

Per-class accuracy against PySceneDetect and TransNetV2 on varied material:
bench/scenes_classes.py.

F1: a cut counts when found within +-2 frames, a gradual transition
anywhere inside it; each true boundary matches at most one found one.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenes_video import bench_video
from pipeline.core.config import Settings
from pipeline.shots.scenes import detect_scenes
from tests.videogen import Boundary

CUT_TOLERANCE = 2


def f1(found: list[int], truth: list[Boundary]) -> tuple[float, int, int, int]:
    """(F1, true positives, false positives, misses)."""
    unused = sorted(found)
    tp = 0
    for b in truth:
        lo, hi = (b.first - CUT_TOLERANCE, b.last + CUT_TOLERANCE) if b.kind == "cut" else (b.first, b.last)
        hits = [f for f in unused if lo <= f <= hi]
        if hits:
            centre = (b.first + b.last) / 2
            unused.remove(min(hits, key=lambda f: abs(f - centre)))
            tp += 1
    fp, fn = len(unused), len(truth) - tp
    score = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return score, tp, fp, fn


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of the children it has waited for (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn):
    """(result, wall seconds, CPU seconds): CPU is what a busy worker pays, and steadier on a shared box."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - start, cpu_seconds() - start_cpu


def ffmpeg_seconds(args: list[str]) -> tuple[float, float]:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    _, seconds, cpu = timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))
    return seconds, cpu


def probe_of(path: Path):
    try:
        from pipeline.media.probe import probe

        return probe(path, Settings())
    except ImportError:  # pragma: no cover - before pipeline.media.probe existed
        from pipeline.core.types import ProbeResult
        from tests.videogen import probe_for_tests

        return ProbeResult(**probe_for_tests(path))


def run_vidx(path: Path, reference_pass: bool = False) -> list[int]:
    settings = Settings().with_overrides(shot_reference_pass=reference_pass)
    scenes = list(detect_scenes(path, probe_of(path), settings))
    return [s.span.start_frame for s in scenes[1:]]


def run_pyscenedetect(path: Path) -> list[int]:
    from scenedetect import AdaptiveDetector, detect

    scenes = detect(str(path), AdaptiveDetector())
    return [getattr(start, "frame_num", None) or start.get_frames() for start, _ in scenes[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-variants", action="store_true", help="skip the decode-only variants")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the timed runs this many times")
    args = parser.parse_args()

    video, truth, frames = bench_video()
    x = str(video)
    cuts = sum(b.kind == "cut" for b in truth)
    print(f"video: {video.name}, 1920x1080 H.264 (x264 defaults), {frames} frames at 25 fps, "
          f"{len(truth)} boundaries ({cuts} cuts, {len(truth) - cuts} gradual)")

    floor, floor_cpu = ffmpeg_seconds(["-i", x, "-f", "null", "-"])
    print(f"decode floor  ffmpeg -i X -f null -           {floor:7.1f} s  ({frames / floor:5.0f} fps)  "
          f"CPU {floor_cpu:6.1f} s")
    if not args.no_variants:
        small = ["-vf", "scale=64:36:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", "/dev/null"]
        variants = {
            "full decode, 64x36 to pipe": ["-i", x, *small],
            "-skip_loop_filter all, 64x36": ["-skip_loop_filter", "all", "-i", x, *small],
            "-skip_loop_filter all -skip_frame noref": ["-skip_loop_filter", "all", "-skip_frame", "noref",
                                                         "-i", x, *small],
            "-skip_frame bidir, 64x36": ["-skip_frame", "bidir", "-i", x, *small],
            "showinfo (checksums on), 64x36": ["-i", x, "-vf", "showinfo,scale=64:36:flags=area", *small[2:]],
            "showinfo=checksum=0, 64x36": ["-i", x, "-vf", "showinfo=checksum=0,scale=64:36:flags=area",
                                           *small[2:]],
            "vidx pass: 64x36 + 640x360 every 6th": [
                "-i", x, "-filter_complex",
                "[0:v]split=2[d][s];[d]scale=64:36:flags=area,format=rgb24[det];"
                "[s]select='not(mod(n\\,6))',scale=640:360:flags=area,format=rgb24[smp]",
                "-map", "[det]", "-f", "rawvideo", "-y", "/dev/null", "-map", "[smp]", "-f", "rawvideo", "-y",
                "/dev/null"],
        }
        for name, cmd in variants.items():
            s, c = ffmpeg_seconds(cmd)
            print(f"  decode only: {name:40s} {s:7.1f} s  ({s / floor:4.2f}x floor)  "
                  f"CPU {c:6.1f} s ({c / floor_cpu:4.2f}x floor)")

    # Rounds alternate the three runs, so load from neighbours on a shared host hits each alike;
    # the ratios are taken within a round, and their median is the figure to quote.
    ratios: list[tuple[float, float]] = []
    for r in range(args.rounds):
        if args.rounds > 1:
            print(f"-- round {r + 1} of {args.rounds}")
        ours, t_ours, c_ours = timed(lambda: run_vidx(video))
        theirs, t_theirs, c_theirs = timed(lambda: run_pyscenedetect(video))
        refs, t_refs, c_refs = timed(lambda: run_vidx(video, reference_pass=True))
        f_ours, f_theirs, f_refs = f1(ours, truth), f1(theirs, truth), f1(refs, truth)
        print(f"vidx detect_scenes            {t_ours:7.1f} s  ({frames / t_ours:5.0f} fps)  CPU {c_ours:6.1f} s  "
              f"F1 {f_ours[0]:.3f}  (tp {f_ours[1]}, fp {f_ours[2]}, missed {f_ours[3]})")
        print(f"vidx reference pass (exp.)    {t_refs:7.1f} s  ({frames / t_refs:5.0f} fps)  CPU {c_refs:6.1f} s  "
              f"F1 {f_refs[0]:.3f}  (tp {f_refs[1]}, fp {f_refs[2]}, missed {f_refs[3]})  "
              f"{t_theirs / t_refs:.2f}x PySceneDetect ({c_theirs / c_refs:.2f}x in CPU)")
        print(f"PySceneDetect AdaptiveDetector {t_theirs:6.1f} s  ({frames / t_theirs:5.0f} fps)  CPU {c_theirs:6.1f} s  "
              f"F1 {f_theirs[0]:.3f}  (tp {f_theirs[1]}, fp {f_theirs[2]}, missed {f_theirs[3]})")
        print(f"speed: vidx is {t_theirs / t_ours:.2f}x PySceneDetect ({c_theirs / c_ours:.2f}x in CPU); "
              f"vidx takes {t_ours / floor:.2f}x the decode floor ({c_ours / floor_cpu:.2f}x in CPU)")
        ratios.append((t_theirs / t_ours, t_theirs / t_refs))
    if len(ratios) > 1:
        default, reference = (statistics.median(x) for x in zip(*ratios, strict=True))
        print(f"median of {len(ratios)} rounds: vidx {default:.2f}x PySceneDetect, reference pass {reference:.2f}x")

if __name__ == "__main__":
    main()
