"""Worker capacity: video-hours indexed per worker-hour, by source resolution, CLIP on.

For the capacity plan (docs/scaling.md): one ``vidx index`` process (what one
worker with ``--concurrency 1`` does per job) over generated videos at 360p,
720p and 1080p, cut every 2-4 s. The rate is video-seconds / busy seconds
(the sum of the per-video ``total_ms`` that ``vidx index --json`` reports;
process start-up excluded, as a worker is already warm), split into scene
detection (decode included) and embedding. On a shared machine wall time
depends on the neighbours, so it also reports CPU time (ffmpeg included; this
one includes the command's start-up and model load, so it is pessimistic):
video-hours per CPU-core-hour is the figure to size a fleet with.

CLIP needs weights and there is no network here: pass ``--clip-checkpoint``
(e.g. ``python scripts/make_checkpoint.py ViT-B-32 /tmp/ViT-B-32-random.pt``).
Random weights cost exactly what trained ones cost (same architecture, same FLOPs);
only the similarities are meaningless.

    .venv/bin/python bench/capacity.py --clip-checkpoint /tmp/ViT-B-32-random.pt [--videos 2 --seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import make_videos  # noqa: E402

from pipeline.store import embedded  # noqa: E402

OWNER = uuid.UUID("44444444-4444-4444-4444-444444444444")
SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def index_rate(env: dict[str, str], paths: list[Path], video_s: float) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", "index", "--owner", str(OWNER), "--json",
         *map(str, paths)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # ffmpeg children included
    items = json.loads(out)
    stage = {key: sum(item["timing"].get(key, 0.0) for item in items) / 1000.0
             for key in ("probe_ms", "scenes_ms", "embed_ms", "total_ms")}
    scenes = sum(len(item["scenes"]) for item in items)
    busy = stage["total_ms"]
    return {
        "video_s": video_s,
        "busy_s": round(busy, 1),
        "scenes": scenes,
        "video_hours_per_worker_hour": round(video_s / busy, 2),
        "cpu_s_whole_command": round(cpu_s, 1),
        "video_hours_per_cpu_core_hour": round(video_s / cpu_s, 2),
        "share_scene_detection": round(stage["scenes_ms"] / busy, 2),
        "share_embedding": round(stage["embed_ms"] / busy, 2),
        "embed_ms_per_scene": round(stage["embed_ms"] * 1000 / scenes, 1) if scenes else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--resolutions", default="360p,720p,1080p")
    parser.add_argument("--clip-checkpoint", type=Path, help="local CLIP weights (CLIP off without them)")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vidx-capacity-"))
    try:
        db_url = embedded.start(work / "pg")
        env = dict(os.environ, DATABASE_URL=db_url, VIDX_DATA_DIR=str(work / "data"),
                   VIDX_SIDECAR_DIR=str(work / "sidecars"), PYTHONPATH=str(ROOT),
                   CLIP_ENABLED="false")
        if args.clip_checkpoint:
            env.update(CLIP_ENABLED="true", CLIP_CHECKPOINT=str(args.clip_checkpoint.resolve()),
                       CLIP_MODEL_NAME=args.clip_model, CLIP_PRETRAINED="local-checkpoint")
        result: dict = {"cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                        "clip": args.clip_model if args.clip_checkpoint else "off", "resolutions": {}}
        for name in args.resolutions.split(","):
            paths = make_videos(args.videos, args.seconds, SIZES[name])
            result["resolutions"][name] = index_rate(env, paths, args.videos * args.seconds)
            print(f"{name}: {json.dumps(result['resolutions'][name])}", file=sys.stderr, flush=True)
        result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        embedded.stop(work / "pg")
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
