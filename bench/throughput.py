"""Queue throughput: video-seconds indexed per wall-second with 1 and 2 worker processes.

Each result is a ratio to ``vidx index`` in one process on the same set of
generated videos, timed in the same run (never an absolute threshold).

    .venv/bin/python bench/throughput.py [--videos 8] [--seconds 12] [--clip-checkpoint FILE --clip-model NAME]

The bench starts its own redis-server and PostgreSQL (pgserver's binaries)
on free ports, generates the videos once into bench/.cache/, then:

1. baseline: ``vidx index --json`` over all videos in one process; its
   rate is video-seconds / the sum of the per-video ``total_ms`` it reports
   (process start-up and imports excluded, as workers are already warm);
2. for N in (1, 2): N ``vidx worker --concurrency 1`` processes, already
   started; the clock runs from ``vidx enqueue`` until every video is done.

CLIP is off unless a local checkpoint is given (no network here); with it
on, each worker child loads its own model (the load is part of the first
job, as in production).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import videogen  # noqa: E402
from tests.fixtures.queue import DedicatedPostgres, RedisServer, WorkerPool, wait_for, worker_env  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "throughput"
OWNER = uuid.UUID("33333333-3333-3333-3333-333333333333")
FPS = 25


def make_videos(count: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    """``count`` videos of ``seconds`` each with a cut every 2-4 s (cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = CACHE / f"v{i:02d}_{seconds:g}s_{size[0]}x{size[1]}.mp4"
        if not path.exists():
            frames, scenes = int(seconds * FPS), []
            while sum(scenes) < frames:
                scenes.append(min(FPS * (2 + (len(scenes) + i) % 3), frames - sum(scenes)))
            videogen.make_cut_video(path, scenes, size=size, fps=FPS)
        paths.append(path)
    return paths


def vidx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )


def baseline_rate(env: dict[str, str], paths: list[Path], video_s: float) -> tuple[float, float]:
    """(video-s per busy second, wall seconds of the whole command) for ``vidx index``."""
    started = time.perf_counter()
    out = vidx(env, "index", "--owner", str(OWNER), "--json", *map(str, paths)).stdout
    wall = time.perf_counter() - started
    busy_s = sum(item["timing"]["total_ms"] for item in json.loads(out)) / 1000.0
    return video_s / busy_s, wall


def queue_rate(env: dict[str, str], paths: list[Path], video_s: float, processes: int, db_url: str) -> float:
    import psycopg

    pool = WorkerPool(Path(tempfile.mkdtemp(prefix="vidx-bench-logs-")))
    try:
        for i in range(processes):
            pool.start(env, name=f"bench{i}")
        started = time.perf_counter()
        ids = [row["video_id"] for row in json.loads(vidx(env, "enqueue", "--owner", str(OWNER), "--json",
                                                          *map(str, paths)).stdout)]

        def all_done() -> bool:
            with psycopg.connect(db_url) as conn:
                rows = conn.execute("SELECT status, error FROM videos WHERE id = ANY(%s)", (ids,)).fetchall()
            failed = [error for status, error in rows if status == "failed"]
            if failed:
                raise RuntimeError(f"a video failed: {failed[0]}")
            return sum(status == "done" for status, _ in rows) == len(ids)

        wait_for(all_done, timeout=3600, interval=0.1, what="all videos done")
        return video_s / (time.perf_counter() - started)
    finally:
        pool.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--size", default="640x360", help="WxH of the generated videos")
    parser.add_argument("--clip-checkpoint", type=Path, help="local CLIP weights (CLIP stays off without them)")
    parser.add_argument("--clip-model", default="ViT-B-32")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))

    paths = make_videos(args.videos, args.seconds, size)  # type: ignore[arg-type]
    video_s = args.videos * args.seconds
    work = Path(tempfile.mkdtemp(prefix="vidx-bench-"))
    redis_server, postgres = RedisServer(work), DedicatedPostgres(work).init()
    redis_server.start()
    postgres.start()
    try:
        clip = {"CLIP_ENABLED": "false"}
        if args.clip_checkpoint:
            clip = {"CLIP_ENABLED": "true", "CLIP_CHECKPOINT": str(args.clip_checkpoint),
                    "CLIP_MODEL_NAME": args.clip_model, "CLIP_PRETRAINED": "local-checkpoint"}
        env = worker_env(broker_url=redis_server.url, database_url=postgres.url, data_dir=work / "data",
                         VIDX_FRAME_HEIGHT=os.environ.get("VIDX_FRAME_HEIGHT", "360"),
                         VIDX_TASK_SOFT_TIME_LIMIT_S="3000", VIDX_TASK_TIME_LIMIT_S="3600",
                         **clip)
        print(f"set: {args.videos} videos x {args.seconds:g} s = {video_s:g} video-s, {size[0]}x{size[1]}, "
              f"CLIP {'on' if args.clip_checkpoint else 'off'}, {os.cpu_count()} cores")
        base, base_wall = baseline_rate(env, paths, video_s)
        print(f"vidx index, 1 process:   {base:7.2f} video-s/s  (ratio 1.00; command wall {base_wall:.1f} s "
              f"incl. start-up)")
        for processes in (1, 2):
            rate = queue_rate(env, paths, video_s, processes, postgres.url)
            print(f"queue, {processes} worker process{'es' if processes > 1 else '  '}: {rate:7.2f} video-s/s  "
                  f"(ratio {rate / base:.2f})")
    finally:
        postgres.destroy()
        redis_server.stop()


if __name__ == "__main__":
    main()
