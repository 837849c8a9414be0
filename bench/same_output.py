"""Does a refactor change what vidx produces? Index the same videos with two revisions and compare.

For each shot pass (the default and the reference-frame pass), both trees
index the same generated videos (the bench's timeline generator, shorter
and smaller) into their own embedded database and sidecar directory, with
the same tiny random-weights CLIP checkpoint; then the default pass is
searched by an image. Compared: every sidecar (volatile keys such as timing
and paths dropped), the bytes of every best-frame JPEG, and the ranked
search results. Prints one line per video and pass, and exits 1 on any
difference.

    .venv/bin/python bench/same_output.py --base 48a57f0      # a commit, against the working tree

``--no-clip-for-base-reference``: the base revision's reference pass runs
with CLIP off (before issue 26 it could hang with both on); CLIP fields are
then left out of that comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scenes_video import build_timeline  # noqa: E402

from tests.fixtures.clip import TINY_MODEL_NAME, write_tiny_checkpoint  # noqa: E402
from tests.videogen import make_timeline  # noqa: E402

OWNER = "11111111-1111-1111-1111-111111111111"
VOLATILE = {"timing", "created_at", "inference_time_ms", "frame_path", "path"}
CLIP_KEYS = ("embedding_visual_clip", "visual_clip_metadata", "labels", "description")
# (seed, size, extra x264 options): B-frames on two, so the reference pass has frames to skip
VIDEOS = ((7, (480, 270), None), (11, (640, 360), ["-bf", "3", "-g", "50"]), (23, (480, 270), ["-bf", "2"]))
CLI = "import sys; from worker.cli import main; sys.argv = ['vidx', *sys.argv[1:]]; main()"


def make_inputs(work: Path) -> tuple[list[Path], Path, Path]:
    videos = []
    for seed, size, extra in VIDEOS:
        shots, transitions = build_timeline(seed=seed, seconds=40.0)
        path, _, _ = make_timeline(work / f"v{seed}.mp4", shots, transitions, size=size, extra=extra)
        videos.append(path)
    query = work / "query.jpg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "3", "-i", str(videos[1]), "-frames:v", "1", str(query)], check=True)
    return videos, query, write_tiny_checkpoint(work / "ckpt", TINY_MODEL_NAME, 512)


def run_tree(tree: Path, out: Path, videos: list[Path], query: Path, checkpoint: Path, *, reference: bool, clip: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDX_", "CLIP_", "CELERY_", "DATABASE_URL"))}
    env.update(
        PYTHONPATH=str(tree), VIDX_DATA_DIR=str(out / "data"), VIDX_SIDECAR_DIR=str(out / "sidecars"),
        CLIP_ENABLED=str(clip).lower(), CLIP_MODEL_NAME=TINY_MODEL_NAME, CLIP_CHECKPOINT=str(checkpoint),
        CLIP_PRETRAINED="local-checkpoint", CLIP_DEVICE="cpu", CLIP_TIMEOUT_S="30",
        VIDX_SHOT_REFERENCE_PASS=str(reference).lower(), VIDX_DECODE_PROCESSES="2",
    )

    def vidx(*args: str, timeout: float = 900) -> str:
        proc = subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=out, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode:
            raise SystemExit(f"{tree}: vidx {args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    try:
        vidx("index", *map(str, videos), "--owner", OWNER)
        if not reference:
            (out / "search.json").write_text(
                vidx("search", "--image", str(query), "--owner", OWNER, "--threshold", "-1", "--limit", "40", "--json"))
    finally:
        subprocess.run([sys.executable, "-c", CLI, "db", "stop"], env=env, cwd=out, capture_output=True, timeout=120)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def sidecars(out: Path, *, clip: bool) -> dict[str, tuple[Any, dict[str, str]]]:
    found = {}
    for current in sorted((out / "sidecars").iterdir()):
        if current.name.startswith("."):
            continue
        doc = _strip(json.loads((current / "sidecar.json").read_text()))
        if not clip:
            for scene in doc["scenes"]:
                for key in CLIP_KEYS:
                    scene.pop(key, None)
        jpegs = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(current.glob("*.jpg"))}
        found[current.name] = (doc, jpegs)
    return found


def ranked(out: Path) -> list[tuple[Any, ...]]:
    rows = json.loads((out / "search.json").read_text())
    # the scene's index was `scene_index` in `vidx search --json` before the one scene schema
    return [(r["video_id"], r.get("index", r.get("scene_index")), round(r["similarity"], 5)) for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare the working tree against")
    parser.add_argument("--no-clip-for-base-reference", action="store_true")
    args = parser.parse_args()
    same = True
    with tempfile.TemporaryDirectory(prefix="vidx-same-") as tmp:
        work = Path(tmp)
        base = work / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            videos, query, checkpoint = make_inputs(work)
            for reference in (False, True):
                pass_name = "reference" if reference else "default"
                base_clip = not (reference and args.no_clip_for_base_reference)
                outs = {}
                for name, tree, clip in (("base", base, base_clip), ("tree", ROOT, True)):
                    outs[name] = work / f"{name}-{pass_name}"
                    outs[name].mkdir()
                    run_tree(tree, outs[name], videos, query, checkpoint, reference=reference, clip=clip)
                a, b = sidecars(outs["base"], clip=base_clip), sidecars(outs["tree"], clip=base_clip)
                for video_id in sorted(set(a) | set(b)):
                    doc_same = a.get(video_id, (None, None))[0] == b.get(video_id, (None, None))[0]
                    jpeg_same = a.get(video_id, (None, None))[1] == b.get(video_id, (None, None))[1]
                    scenes = len((b.get(video_id) or a[video_id])[0]["scenes"])
                    print(f"{pass_name:9} {video_id[:8]} scenes {scenes:3}  sidecar {'same' if doc_same else 'DIFFERS'}"
                          f"  frames {'same' if jpeg_same else 'DIFFER'}")
                    same &= doc_same and jpeg_same
                if not reference:
                    hits = ranked(outs["base"]) == ranked(outs["tree"])
                    print(f"search    {len(ranked(outs['tree']))} ranked results {'same' if hits else 'DIFFER'}")
                    same &= hits
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
            shutil.rmtree(base, ignore_errors=True)
    print("same output" if same else "OUTPUT CHANGED")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
