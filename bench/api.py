"""HTTP API overhead: search through `vidx serve` vs the same search called directly, in one run.

Loads ``--scenes`` synthetic scenes (L2-normalised 512-d vectors, one owner,
``--videos`` videos) into a throwaway database, starts a real ``vidx serve``
(uvicorn, its own process) on 127.0.0.1, and times two searches ``--queries``
times each, sequentially on a keep-alive connection:

* ``similar``: ``GET /v1/scenes/{id}/similar`` vs ``store.search_similar`` (no model involved);
* ``text``: ``POST /v1/search/text`` vs ``clip.encode_text`` + ``store.search_by_embedding``,
  both with the model already loaded (a warm-up request loads it in the server).

The two paths alternate query by query, so both see the same machine load.

Reports requests per second and p50/p95 latency for each path and the HTTP
layer's added p95 (target: <= 5 ms). The model is a tiny local checkpoint
(no download): the text encoder's cost is not the point, the difference is.
Runs against DATABASE_URL if set (creates and drops ``vidx_bench_api``), else an embedded server.

    .venv/bin/python bench/api.py [--scenes 20000] [--queries 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import store  # noqa: E402
from pipeline.store import embedded  # noqa: E402
from pipeline.store.connection import with_database  # noqa: E402

BENCH_DB = "vidx_bench_api"
OWNER = uuid.UUID("0be0be00-0000-4000-8000-00000000beef")
TARGET_ADDED_P95_MS = 5.0
MODEL_NAME = "vidx-bench-tiny"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summary(latencies_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "rps": round(len(ms) / (sum(ms) / 1000), 1),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def timed(call, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - started)
    return out


def interleaved(first, second, n: int) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        a += timed(lambda _, i=i: first(i), 1)
        b += timed(lambda _, i=i: second(i), 1)
    return a, b


def tiny_checkpoint(directory: Path) -> Path:
    from tests.fixtures.clip import write_tiny_checkpoint

    return write_tiny_checkpoint(directory, MODEL_NAME, 512)


def load_scenes(settings, n_scenes: int, n_videos: int) -> list[uuid.UUID]:
    from pipeline.clip.identity import model_identity
    from pipeline.core.types import FrameQuality, ProbeResult, SceneRecord
    from pipeline.store.scene_reads import list_scenes

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_scenes, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    identity = model_identity(settings)
    per_video = n_scenes // n_videos
    scene_ids: list[uuid.UUID] = []
    with store.connect(settings) as conn:
        for v in range(n_videos):
            video_id = uuid.uuid5(OWNER, f"bench-{v}")
            records = [
                SceneRecord(
                    index=i, start_frame=i * 25, end_frame=i * 25 + 24, start_s=float(i), end_s=i + 1.0,
                    best_frame=i * 25 + 12, best_time_s=i + 0.5, frame_path=f"/nonexistent/scene_{i:05d}.jpg",
                    frame_quality=FrameQuality(0.8, 0.8, 0.8, 0.8, 0.8), embedding=vectors[v * per_video + i].tolist(),
                    visual_clip_metadata={"model_name": MODEL_NAME, "inference_time_ms": 1.0, "error": None},
                    embedding_model=identity,
                )
                for i in range(per_video)
            ]
            probe = ProbeResult(duration_s=per_video, fps=25.0, frame_count=per_video * 25, width=320, height=180, codec="h264")
            store.replace_scenes(conn, video_id=video_id, owner_id=OWNER, source=f"bench-{v}.mp4", probe=probe, scenes=records)
            scene_ids += [s["id"] for s in list_scenes(conn, video_id, owner_id=OWNER)]
    return scene_ids


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    code = "from worker.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_ready(client, deadline_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if client.get("/v1/live").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("vidx serve did not answer /v1/live within 60s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=20_000)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import httpx

    # the client's own per-request INFO line would be timed as "HTTP overhead"
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from pipeline import clip
    from pipeline.clip.identity import model_identity
    from pipeline.core.config import load_settings
    from pipeline.store.api_keys import create_api_key
    from tests.fixtures.queue import free_port

    work = Path(tempfile.mkdtemp(prefix="vidx-bench-api-"))
    server = None
    admin_url = os.environ.get("DATABASE_URL") or embedded.start(work / "pg", database="postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": with_database(admin_url, BENCH_DB), "VIDX_DATA_DIR": str(work / "data"),
            "CLIP_ENABLED": "true", "CLIP_MODEL_NAME": MODEL_NAME, "CLIP_CHECKPOINT": str(tiny_checkpoint(work / "clip")),
            "CLIP_PRETRAINED": "local-checkpoint", "CLIP_DEVICE": "cpu", "CLIP_TIMEOUT_S": "30",
            "VIDX_API_RATE_PER_MINUTE": "1000000", "VIDX_API_RATE_BURST": "1000000",
            "VIDX_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT),
        })
        settings = load_settings(env)
        scene_ids = load_scenes(settings, args.scenes, args.videos)
        with store.connect(settings) as conn:
            _, key = create_api_key(conn, owner_id=OWNER, name="bench")

        port = free_port()
        server = start_server(env, port)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=60)
        wait_ready(http)
        texts = [f"scene number {i} with a red car" for i in range(args.queries)]
        model = model_identity(settings)

        def http_similar(i: int) -> None:
            r = http.get(f"/v1/scenes/{scene_ids[i % len(scene_ids)]}/similar", params={"threshold": -1, "limit": 10})
            assert r.status_code == 200 and len(r.json()["results"]) == 10, r.text

        def http_text(i: int) -> None:
            r = http.post("/v1/search/text", json={"text": texts[i], "threshold": -1, "limit": 10})
            assert r.status_code == 200 and len(r.json()["results"]) == 10, r.text

        with store.connect(settings) as conn:

            def direct_similar(i: int) -> None:
                rows = store.search_similar(conn, scene_ids[i % len(scene_ids)], owner_id=OWNER, threshold=-1, limit=10)
                assert len(rows) == 10

            def direct_text(i: int) -> None:
                vector = clip.encode_text([texts[i]], settings)[0]
                rows = store.search_by_embedding(conn, vector, owner_id=OWNER, threshold=-1, limit=10, model=model)
                assert len(rows) == 10

            for warm in (http_similar, http_text, direct_similar, direct_text):  # loads the model on both sides
                timed(warm, 10)
            results = {}
            for kind, via_http, direct in (("similar", http_similar, direct_similar), ("text", http_text, direct_text)):
                # Interleaved, so both paths see the same machine load over the run.
                h_times, d_times = interleaved(via_http, direct, args.queries)
                h, d = summary(h_times), summary(d_times)
                results[kind] = {"http": h, "direct": d, "added_p95_ms": round(h["p95_ms"] - d["p95_ms"], 3),
                                 "added_p50_ms": round(h["p50_ms"] - d["p50_ms"], 3)}
        # The floor under any endpoint: client, loopback, uvicorn and the middlewares, no handler work.
        floor = summary(timed(lambda _: http.get("/v1/live").raise_for_status(), args.queries))
        http.close()
        report = {"scenes": args.scenes, "queries": args.queries, "target_added_p95_ms": TARGET_ADDED_P95_MS,
                  "results": results, "round_trip_floor": floor,
                  "meets_target": all(r["added_p95_ms"] <= TARGET_ADDED_P95_MS for r in results.values())}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{args.scenes} scenes, {args.queries} sequential queries per path (keep-alive, 127.0.0.1)")
            print(f"{'search':<8} {'path':<7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
            for kind, r in results.items():
                for path in ("http", "direct"):
                    s = r[path]
                    print(f"{kind:<8} {path:<7} {s['rps']:>8.1f} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f}")
                print(f"{kind:<8} HTTP adds {r['added_p50_ms']:.2f} ms at p50, {r['added_p95_ms']:.2f} ms at p95"
                      f" (target <= {TARGET_ADDED_P95_MS} ms)")
            print(f"round trip floor (GET /v1/live): p50 {floor['p50_ms']:.2f} ms, p95 {floor['p95_ms']:.2f} ms")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        finally:
            if not os.environ.get("DATABASE_URL"):
                embedded.stop(work / "pg")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
