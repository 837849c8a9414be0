"""Worker capacity: video-hours indexed per worker-hour, by source resolution, CLIP on.

For the capacity plan (docs/scaling.md). In one process, as a worker child
with ``--concurrency 1`` runs its jobs: index generated videos at 360p, 720p
and 1080p (cut every 2-4 s) through ``pipeline.indexer.index_video`` with
CLIP on, after one untimed warm-up video (the model load, paid once per
worker child). Per resolution it reports

- wall rate: video-seconds per second of indexing (what one worker does on
  this machine, with whatever else runs on it);
- CPU rate: video-seconds per CPU-second, ffmpeg included (this process's
  threads plus its waited-for children): what one core does, the figure to
  size a fleet with, and far less sensitive to neighbours than wall time;
- the share of wall time in scene detection (decode included) and embedding,
  and the best-frame JPEG bytes per scene.

CLIP needs weights and there is no network here: pass ``--clip-checkpoint``
(``python scripts/make_checkpoint.py ViT-B-32 /tmp/ViT-B-32-random.pt``).
Random weights cost exactly what trained ones cost (same architecture, same
FLOPs); only their similarities are meaningless.

    .venv/bin/python bench/capacity.py --clip-checkpoint /tmp/ViT-B-32-random.pt [--videos 2 --seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import make_videos  # noqa: E402

from pipeline.store import embedded  # noqa: E402

OWNER = uuid.UUID("44444444-4444-4444-4444-444444444444")
SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (ffmpeg)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def index_all(paths: list[Path], settings, video_s: float) -> dict:
    from pipeline.indexer import index_video

    busy = cpu = scenes_s = embed_s = 0.0
    scenes = jpeg_bytes = 0
    for path in paths:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        result = index_video(path, video_id=uuid.uuid4(), owner_id=OWNER, settings=settings)
        busy += time.perf_counter() - t0
        cpu += cpu_seconds() - cpu0
        scenes_s += result.timing_ms.get("scenes_ms", 0.0) / 1000
        embed_s += result.timing_ms.get("embed_ms", 0.0) / 1000
        scenes += len(result.scenes)
        jpeg_bytes += sum(f.stat().st_size for f in Path(result.sidecar_dir).glob("*.jpg"))
    return {
        "video_s": video_s,
        "scenes": scenes,
        "busy_s": round(busy, 1),
        "cpu_s": round(cpu, 1),
        "video_hours_per_worker_hour": round(video_s / busy, 2),
        "video_hours_per_cpu_core_hour": round(video_s / cpu, 2),
        "share_scene_detection": round(scenes_s / busy, 2),
        "share_embedding": round(embed_s / busy, 2),
        "jpeg_kb_per_scene": round(jpeg_bytes / max(1, scenes) / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--resolutions", default="360p,720p,1080p")
    parser.add_argument("--clip-checkpoint", type=Path, help="local CLIP weights (CLIP off without them)")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vidx-capacity-"))
    try:
        os.environ.update(DATABASE_URL=embedded.start(work / "pg"), VIDX_DATA_DIR=str(work / "data"),
                          VIDX_SIDECAR_DIR=str(work / "sidecars"), CLIP_ENABLED="false")
        if args.clip_checkpoint:
            os.environ.update(CLIP_ENABLED="true", CLIP_CHECKPOINT=str(args.clip_checkpoint.resolve()),
                              CLIP_MODEL_NAME=args.clip_model, CLIP_PRETRAINED="local-checkpoint")
        from pipeline.core.config import load_settings

        settings = load_settings()
        result: dict = {"cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                        "clip": args.clip_model if args.clip_checkpoint else "off",
                        "frame_height": settings.frame_height, "resolutions": {}}
        videos = {name: make_videos(args.videos, args.seconds, SIZES[name]) for name in args.resolutions.split(",")}
        warm = time.perf_counter()
        index_all(next(iter(videos.values()))[:1], settings, args.seconds)  # model load: once per worker child
        result["warm_up_s"] = round(time.perf_counter() - warm, 1)
        for name, paths in videos.items():
            result["resolutions"][name] = index_all(paths, settings, args.videos * args.seconds)
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
