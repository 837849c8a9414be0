"""Search RPC benchmark: latency and recall@10 of search_scenes_by_visual_clip_embedding.

N synthetic L2-normalised 512-d vectors (100k by default; --n 1000000 for the
big run) spread over 100 owners with Zipf-skewed sizes (the largest holds
~19%, one holds ~1%). For the largest owner and the ~1% owner it times the
SQL function (p50/p95 over --queries calls) and compares its top 10 with an
exact search done in numpy (recall@10). It also times the HNSW index build.

Data: ``clustered`` (default) draws points around N/100 random centres, a
stand-in for CLIP embeddings, which cluster by content; ``uniform`` draws
points uniformly on the sphere, the hardest case for any ANN index.
Queries are dataset points with noise added (a "more like this" search).

Runs against DATABASE_URL if set (it creates and drops a database
``vidx_bench`` there), otherwise against a throwaway embedded server.

    .venv/bin/python bench/search.py                 # 100k, ~3-4 min on 2 cores
    .venv/bin/python bench/search.py --n 1000000     # the big one (tens of minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgvector.psycopg import register_vector

from pipeline.store import embedded, ensure_pgvector, migrate
from pipeline.store.connection import with_database

DIM = 512
BENCH_DB = "vidx_bench"
TARGET_RECALL = 0.95
TARGET_P95_MS = 15.0


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_vectors(n: int, distribution: str, rng: np.random.Generator) -> np.ndarray:
    if distribution == "uniform":
        return normalise(rng.standard_normal((n, DIM), dtype=np.float32))
    centres = normalise(rng.standard_normal((max(1, n // 100), DIM), dtype=np.float32))
    labels = rng.integers(0, len(centres), n)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 50_000):  # chunks keep memory flat at 1M
        stop = min(n, start + 50_000)
        noise = normalise(rng.standard_normal((stop - start, DIM), dtype=np.float32))
        out[start:stop] = normalise(centres[labels[start:stop]] + 0.9 * noise)
    return out


def make_owners(n: int, owners: int, rng: np.random.Generator) -> tuple[np.ndarray, list[uuid.UUID], np.ndarray]:
    """Owner index per row (Zipf weights 1/rank), owner ids, and each owner's share."""
    weights = 1.0 / np.arange(1, owners + 1)
    weights /= weights.sum()
    assignment = rng.choice(owners, size=n, p=weights)
    ids = [uuid.UUID(int=i + 1) for i in range(owners)]
    return assignment, ids, weights


def load(conn: psycopg.Connection, vectors: np.ndarray, assignment: np.ndarray, owner_ids: list[uuid.UUID]) -> dict:
    """Videos (one per 50 scenes of an owner) and scenes, by binary COPY; index dropped first."""
    conn.execute("DROP INDEX IF EXISTS scenes_embedding_visual_clip_hnsw_idx")
    conn.execute("TRUNCATE scenes, videos CASCADE")
    scene_ids = [uuid.uuid4() for _ in range(len(vectors))]
    per_owner_count = np.zeros(len(owner_ids), dtype=np.int64)
    video_of_row: list[uuid.UUID] = []
    index_in_video: list[int] = []
    videos: dict[tuple[int, int], uuid.UUID] = {}
    for owner in assignment:
        k = int(per_owner_count[owner])
        per_owner_count[owner] += 1
        key = (int(owner), k // 50)
        if key not in videos:
            videos[key] = uuid.uuid4()
        video_of_row.append(videos[key])
        index_in_video.append(k % 50)
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy("COPY videos (id, owner_id, source, status, progress) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid", "text", "text", "float4"])
            for (owner, number), video_id in videos.items():
                copy.write_row((video_id, owner_ids[owner], f"bench://{owner}/{number}", "done", 1.0))
        with cur.copy(
            "COPY scenes (id, video_id, owner_id, scene_index, start_frame, end_frame, start_s, end_s, "
            "frame_path, embedding_visual_clip) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "uuid", "uuid", "int4", "int4", "int4", "float8", "float8", "text", "vector"])
            for i, vector in enumerate(vectors):
                k = index_in_video[i]
                copy.write_row(
                    (scene_ids[i], video_of_row[i], owner_ids[assignment[i]], k, k * 50, k * 50 + 49,
                     k * 2.0, k * 2.0 + 2.0, f"scene_{k:04d}.jpg", vector)
                )
    load_s = time.perf_counter() - t0
    return {"scene_ids": np.array(scene_ids), "load_s": load_s}


def build_index(conn: psycopg.Connection, maintenance_work_mem: str, workers: int) -> float:
    conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
    t0 = time.perf_counter()
    conn.execute(
        "CREATE INDEX scenes_embedding_visual_clip_hnsw_idx ON scenes "
        "USING hnsw (embedding_visual_clip vector_cosine_ops)"
    )
    build_s = time.perf_counter() - t0
    conn.execute("RESET maintenance_work_mem")
    conn.execute("VACUUM ANALYZE scenes")
    conn.execute("VACUUM ANALYZE videos")
    return build_s


def run_owner(
    conn: psycopg.Connection,
    owner: int,
    owner_ids: list[uuid.UUID],
    vectors: np.ndarray,
    assignment: np.ndarray,
    scene_ids: np.ndarray,
    queries: int,
    rng: np.random.Generator,
    k: int = 10,
) -> dict:
    rows = np.flatnonzero(assignment == owner)
    owner_vectors = vectors[rows]
    picks = rng.choice(len(vectors), size=queries)
    query_vectors = normalise(vectors[picks] + 0.5 * normalise(rng.standard_normal((queries, DIM), dtype=np.float32)) * 0.3)
    sql = "SELECT id FROM search_scenes_by_visual_clip_embedding(%s, -1, %s, %s)"
    for q in query_vectors[:10]:  # warm-up: index pages into shared buffers
        conn.execute(sql, (q, k, owner_ids[owner])).fetchall()
    index_scans_before = hnsw_scans(conn)
    latencies = []
    recalls = []
    short = 0
    for q in query_vectors:
        t0 = time.perf_counter()
        got = conn.execute(sql, (q, k, owner_ids[owner])).fetchall()
        latencies.append((time.perf_counter() - t0) * 1000)
        exact = scene_ids[rows[np.argsort(-(owner_vectors @ q))[:k]]]
        got_ids = {row[0] for row in got}
        recalls.append(len(got_ids & set(exact)) / min(k, len(rows)))
        short += len(got) < min(k, len(rows))
    return {
        "owner_rows": int(len(rows)),
        "owner_share": round(len(rows) / len(vectors), 4),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "short_results": int(short),
        "hnsw_index_used_by": f"{hnsw_scans(conn) - index_scans_before}/{queries} queries",
    }


def hnsw_scans(conn: psycopg.Connection) -> int:
    """How many times the HNSW index was scanned so far (flushed statistics)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # the flush happens at the end of a statement
    row = conn.execute(
        "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'scenes_embedding_visual_clip_hnsw_idx'"
    ).fetchone()
    return int(row[0]) if row else 0


def exact_baseline(conn: psycopg.Connection, owner: int, owner_ids: list[uuid.UUID], vectors: np.ndarray,
                   rng: np.random.Generator, queries: int = 20) -> float:
    """p50 of an exact (no index) search for the same owner: the baseline the index beats."""
    sql = (
        "SELECT id FROM scenes WHERE owner_id = %s AND embedding_visual_clip IS NOT NULL "
        "ORDER BY (embedding_visual_clip <=> %s) + 0 LIMIT 10"
    )
    times = []
    for q in vectors[rng.choice(len(vectors), size=queries)]:
        t0 = time.perf_counter()
        conn.execute(sql, (owner_ids[owner], q)).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return round(float(np.percentile(times, 50)), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="number of scenes (default 100000)")
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per owner")
    parser.add_argument("--distribution", choices=("clustered", "uniform"), default="clustered")
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument("--build-workers", type=int, default=1, help="max_parallel_maintenance_workers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="embedded server's VIDX_DATA_DIR (default: a temporary one, removed afterwards)")
    parser.add_argument("--ef-search", type=int, default=None,
                        help="override the function's hnsw.ef_search for this run (default: the migration's)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database (and server) for inspection")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    tmp_dir = None
    external = os.environ.get("DATABASE_URL", "").strip()
    if external:
        admin_url = external
    elif args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        admin_url = embedded.start(args.data_dir, database="postgres")
    else:
        tmp_dir = Path(tempfile.mkdtemp(prefix="vidx-bench-"))
        admin_url = embedded.start(tmp_dir, database="postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {BENCH_DB}")
        url = with_database(admin_url, BENCH_DB)
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_pgvector(conn)
            migrate(conn)
            register_vector(conn)
            t0 = time.perf_counter()
            vectors = make_vectors(args.n, args.distribution, rng)
            assignment, owner_ids, shares = make_owners(args.n, args.owners, rng)
            gen_s = time.perf_counter() - t0
            loaded = load(conn, vectors, assignment, owner_ids)
            build_s = build_index(conn, args.maintenance_work_mem, args.build_workers)
            if args.ef_search is not None:
                conn.execute(
                    "ALTER FUNCTION search_scenes_by_visual_clip_embedding(vector, double precision, integer, uuid, text, text) "
                    f"SET hnsw.ef_search = {int(args.ef_search)}"
                )
            ef_search = conn.execute(
                "SELECT option_value FROM pg_options_to_table((SELECT proconfig FROM pg_proc "
                "WHERE proname = 'search_scenes_by_visual_clip_embedding')) WHERE option_name = 'hnsw.ef_search'"
            ).fetchone()[0]
            counts = np.bincount(assignment, minlength=args.owners)
            largest = int(np.argmax(counts))
            one_percent = int(np.argmin(np.abs(counts / args.n - 0.01)))
            smallest = int(np.argmin(counts))
            result = {
                "n": args.n,
                "owners": args.owners,
                "distribution": args.distribution,
                "generate_s": round(gen_s, 1),
                "load_s": round(loaded["load_s"], 1),
                "index_build_s": round(build_s, 1),
                "maintenance_work_mem": args.maintenance_work_mem,
                "build_workers": args.build_workers,
                "hnsw_ef_search": int(ef_search),
                "queries_per_owner": args.queries,
                "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                "cpu_count": os.cpu_count(),
            }
            for label, owner in (("largest_owner", largest), ("one_percent_owner", one_percent),
                                 ("smallest_owner", smallest)):
                figures = run_owner(conn, owner, owner_ids, vectors, assignment, loaded["scene_ids"],
                                    args.queries, rng)
                figures["exact_scan_p50_ms"] = exact_baseline(conn, owner, owner_ids, vectors, rng)
                figures["speedup_vs_exact_p50"] = round(figures["exact_scan_p50_ms"] / max(figures["p50_ms"], 1e-3), 1)
                result[label] = figures
        if args.keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    finally:
        if tmp_dir is not None and not args.keep:
            embedded.stop(tmp_dir)
            shutil.rmtree(tmp_dir, ignore_errors=True)

    checks = {
        f"{label}: recall@10 >= {TARGET_RECALL}": result[label]["recall_at_10"] >= TARGET_RECALL
        for label in ("largest_owner", "one_percent_owner")
    }
    checks.update({
        f"{label}: p95 <= {TARGET_P95_MS} ms": result[label]["p95_ms"] <= TARGET_P95_MS
        for label in ("largest_owner", "one_percent_owner")
    })
    result["targets"] = checks
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(result, indent=2))
        print("targets:", "all met" if all(checks.values()) else "NOT all met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
