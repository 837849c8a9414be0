"""Search RPC benchmark at platform shape: recall@10 and latency per owner size class, per index variant.

N synthetic scene embeddings (100k by default; ``--n 1000000`` for the big run)
over 1,000 owners of Zipf sizes (largest ~13%, smallest ~0.013%), shaped like a
video catalogue (bench/scenegen.py: near-duplicate shots within a video, looser
clusters across videos, CLIP's shared direction). Queries are held-out draws of
the same generator, never stored points. For each index variant:

- ``vector``: HNSW on embedding_visual_clip (vector_cosine_ops), the functions of migration 004;
- ``halfvec``: HNSW on embedding_visual_clip::halfvec(512) (halfvec_cosine_ops), migration 008's index
  with migration 009's function (``--pools 100`` gives 008's function back);

it times the index build, measures index/table size and the server's RSS, then
runs the same queries through search_scenes_by_visual_clip_embedding for sample
owners of each size class: recall@10 against exact search (numpy), p50/p95/p99
latency, how many queries walked the HNSW index, and an exact-scan baseline.
The function bodies under test are the migration files' own text.

Runs against DATABASE_URL if set (it creates and drops ``vidx_bench`` there),
otherwise against a throwaway embedded server. ``--out FILE`` rewrites FILE
with the results after every variant (a long run leaves what it finished).

    .venv/bin/python bench/search.py                              # 100k, both variants
    .venv/bin/python bench/search.py --n 1000000 --maintenance-work-mem 3GB --out bench-1m.json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgvector.psycopg import register_vector  # noqa: E402
from scenegen import Catalogue, generate, queries  # noqa: E402

from pipeline.store import embedded, ensure_pgvector, migrate  # noqa: E402
from pipeline.store.connection import with_database  # noqa: E402
from pipeline.store.migrations import migrations_dir  # noqa: E402

BENCH_DB = "vidx_bench"
TARGET_RECALL = 0.95
K = 10
OWNER_INDEX = "scenes_owner_id_idx"
VARIANTS = {
    # name: (index name, index definition, migration whose functions match it)
    "vector": ("scenes_embedding_visual_clip_hnsw_idx",
               "USING hnsw (embedding_visual_clip vector_cosine_ops)", "004_model_identity_and_labels.sql"),
    "halfvec": ("scenes_embedding_halfvec_hnsw_idx",
                "USING hnsw ((embedding_visual_clip::halfvec(512)) halfvec_cosine_ops)", "009_search_candidate_pool.sql"),
}
# owner size classes by share of all rows: (name, lowest share)
CLASSES = (("xl >=5%", 0.05), ("large 1-5%", 0.01), ("medium 0.1-1%", 0.001), ("small 0.02-0.1%", 0.0002),
           ("tiny <0.02%", 0.0))
OWNERS_PER_CLASS = 4
DEFAULT_POOL = 1000  # migration 009's smallest candidate pool (008's was 100), varied by --pools
POOL_CLAUSE = f"greatest(match_count * 2, {DEFAULT_POOL})"
# A returned scene whose exact similarity is within this of the true 10th-best counts as a near-tie
# (half precision blurs similarities in the 4th digit; CLIP scores of unrelated scenes differ by about 0.01-0.05).
TIE_TOLERANCE = 0.005


def load(conn: psycopg.Connection, cat: Catalogue, owner_ids: list[uuid.UUID]) -> tuple[np.ndarray, float]:
    """Videos and scenes by binary COPY, no HNSW index yet; returns scene ids (row order) and seconds."""
    for _, (index, _, _) in VARIANTS.items():
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute("TRUNCATE scenes, videos CASCADE")
    video_ids = [uuid.uuid4() for _ in range(len(cat.video_owner))]
    scene_ids = np.array([uuid.uuid4() for _ in range(len(cat.vectors))])
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy("COPY videos (id, owner_id, source, status, progress) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid", "text", "text", "float4"])
            for v, video_id in enumerate(video_ids):
                copy.write_row((video_id, owner_ids[cat.video_owner[v]], f"bench://{v}.mp4", "done", 1.0))
        with cur.copy(
            "COPY scenes (id, video_id, owner_id, scene_index, start_frame, end_frame, start_s, end_s, "
            "frame_path, embedding_visual_clip, embedding_model) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "uuid", "uuid", "int4", "int4", "int4", "float8", "float8", "text", "vector",
                            "text"])
            for i, vector in enumerate(cat.vectors):
                k = int(cat.scene_in_video[i])
                copy.write_row((scene_ids[i], video_ids[cat.video_of_row[i]], owner_ids[cat.owner_of_row[i]], k,
                                k * 50, k * 50 + 49, k * 2.0, k * 2.0 + 2.0, f"scene_{k:04d}.jpg", vector,
                                "bench/synthetic"))
    load_s = time.perf_counter() - t0
    conn.execute("VACUUM ANALYZE scenes")
    conn.execute("VACUUM ANALYZE videos")
    return scene_ids, load_s


def install_functions(conn: psycopg.Connection, variant: str, pool: int | None = None) -> None:
    """The functions that walk this variant's index, as its migration writes them.

    ``pool`` replaces the smallest candidate pool of migration 009's function (``POOL_CLAUSE``):
    how many index candidates are re-ranked by exact distance, which is what big owners' recall depends on.
    """
    migration = VARIANTS[variant][2]
    text = (migrations_dir() / migration).read_text(encoding="utf-8")
    if pool is not None:
        if POOL_CLAUSE not in text:
            raise SystemExit(f"--pools: {migration} has no {POOL_CLAUSE!r} to vary")
        text = text.replace(POOL_CLAUSE, f"greatest(match_count * 2, {int(pool)})")
    with conn.transaction():
        conn.execute(text)
    conn.execute("ANALYZE scenes")


def build(conn: psycopg.Connection, variant: str, maintenance_work_mem: str, workers: int) -> dict:
    """Drop every HNSW index, build this variant's (timed), then install its functions."""
    index, definition, _ = VARIANTS[variant]
    for other, _, _ in VARIANTS.values():
        conn.execute(f"DROP INDEX IF EXISTS {other}")
    conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
    t0 = time.perf_counter()
    conn.execute(f"CREATE INDEX {index} ON scenes {definition}")
    build_s = time.perf_counter() - t0
    conn.execute("RESET maintenance_work_mem")
    install_functions(conn, variant)
    sizes = conn.execute(
        "SELECT pg_relation_size(%s::regclass), pg_table_size('scenes'), pg_indexes_size('scenes')", (index,)
    ).fetchone()
    return {"index_build_s": round(build_s, 1), "index_mb": round(sizes[0] / 2**20),
            "table_mb": round(sizes[1] / 2**20), "all_indexes_mb": round(sizes[2] / 2**20)}


def index_scans(conn: psycopg.Connection, index: str) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # the flush happens at the end of a statement
    row = conn.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (index,)).fetchone()
    return int(row[0]) if row else 0


def server_rss_mb(admin: psycopg.Connection) -> int | None:
    """Resident memory of the postmaster and its children (shared buffers counted once per process touching them)."""
    import psutil

    try:
        pid = int(admin.execute("SELECT pg_backend_pid()").fetchone()[0])
        postmaster = psutil.Process(pid).parent()
        procs = [postmaster, *postmaster.children()]
        return round(sum(p.memory_info().rss for p in procs) / 2**20)
    except (psutil.Error, TypeError):  # an external server: not ours to inspect
        return None


def pick_owners(sizes: np.ndarray) -> dict[str, list[int]]:
    """Up to OWNERS_PER_CLASS owners per size class, evenly spread (the class's largest and smallest included)."""
    share = sizes / sizes.sum()
    picked: dict[str, list[int]] = {}
    upper = np.inf
    for name, lowest in CLASSES:
        members = np.flatnonzero((share >= lowest) & (share < upper))
        upper = lowest
        if len(members):
            spots = np.unique(np.linspace(0, len(members) - 1, OWNERS_PER_CLASS).round().astype(int))
            picked[name] = [int(members[s]) for s in spots]
    return picked


def make_workload(cat: Catalogue, scene_ids: np.ndarray, picked: dict[str, list[int]], per_class: int,
                  rng: np.random.Generator) -> dict[str, list[tuple[int, np.ndarray, set, str, float]]]:
    """Per class: (owner, query, exact top-K ids, query kind, exact K-th similarity), computed once for every variant."""
    work: dict[str, list[tuple[int, np.ndarray, set, str, float]]] = {}
    for name, owners in picked.items():
        items = []
        for j, owner in enumerate(owners):
            count = per_class // len(owners) + (1 if j < per_class % len(owners) else 0)
            rows = np.flatnonzero(cat.owner_of_row == owner)
            qs, kinds = queries(cat, owner, count, rng)
            scores = qs @ cat.vectors[rows].T
            for q, s, kind in zip(qs, scores, kinds, strict=True):
                top = np.argsort(-s)[:K]
                items.append((owner, q, set(scene_ids[rows[top]]), kind, float(s[top[-1]])))
        work[name] = items
    return work


def run_class(conn: psycopg.Connection, items: list, owner_ids: list[uuid.UUID], index: str) -> dict:
    sql = "SELECT id, similarity FROM search_scenes_by_visual_clip_embedding(%s, -1, %s, %s)"
    for owner, q, *_ in items[:5]:  # warm-up
        conn.execute(sql, (q, K, owner_ids[owner])).fetchall()
    hnsw_before, btree_before = index_scans(conn, index), index_scans(conn, OWNER_INDEX)
    latencies: list[float] = []
    recalls: list[float] = []
    tie_recalls: list[float] = []
    by_kind: dict[str, list[float]] = {}
    short = 0
    for owner, q, exact, kind, kth in items:
        t0 = time.perf_counter()
        got = conn.execute(sql, (q, K, owner_ids[owner])).fetchall()
        latencies.append((time.perf_counter() - t0) * 1000)
        recalls.append(len({r[0] for r in got} & exact) / len(exact))
        # near-tie recall: a result as similar as the true K-th (within TIE_TOLERANCE) is as good an answer
        tie_recalls.append(min(1.0, sum(1 for r in got if r[0] in exact or r[1] >= kth - TIE_TOLERANCE) / len(exact)))
        by_kind.setdefault(kind, []).append(recalls[-1])
        short += len(got) < len(exact)
    hnsw = index_scans(conn, index) - hnsw_before
    btree = index_scans(conn, OWNER_INDEX) - btree_before
    return {
        "queries": len(items),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "recall_min": round(float(np.min(recalls)), 2),
        f"recall_at_10_within_{TIE_TOLERANCE}": round(float(np.mean(tie_recalls)), 4),
        "recall_by_query_kind": {kind: round(float(np.mean(r)), 3) for kind, r in by_kind.items()},
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "short_results": int(short),
        "hnsw_walks": int(hnsw),
        "owner_btree_scans": int(btree),
        "_latencies": latencies,
    }


def exact_baseline_ms(conn: psycopg.Connection, items: list, owner_ids: list[uuid.UUID], count: int = 10) -> float:
    """p50 of an exact owner-filtered scan (no vector index): what the index is for."""
    sql = ("SELECT id FROM scenes WHERE owner_id = %s AND embedding_visual_clip IS NOT NULL "
           "ORDER BY (embedding_visual_clip <=> %s) + 0 LIMIT 10")
    times = []
    for owner, q, *_ in items[:count]:
        t0 = time.perf_counter()
        conn.execute(sql, (owner_ids[owner], q)).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return round(float(np.percentile(times, 50)), 2)


def function_setting(conn: psycopg.Connection, name: str) -> str:
    row = conn.execute(
        "SELECT option_value FROM pg_options_to_table((SELECT proconfig FROM pg_proc "
        "WHERE proname = 'search_scenes_by_visual_clip_embedding')) WHERE option_name = %s", (name,)
    ).fetchone()
    return row[0] if row else "default"


def measure(conn: psycopg.Connection, workload: dict, owner_ids: list[uuid.UUID], index: str) -> dict:
    """Every class's queries through the function: recall, latency, which path served them."""
    all_latencies: list[float] = []
    per_class = {}
    for name, items in workload.items():
        row = run_class(conn, items, owner_ids, index)
        all_latencies += row.pop("_latencies")
        row["exact_scan_p50_ms"] = exact_baseline_ms(conn, items, owner_ids)
        per_class[name] = row
    return {
        "classes": per_class,
        "all_queries": {
            "p50_ms": round(float(np.percentile(all_latencies, 50)), 2),
            "p95_ms": round(float(np.percentile(all_latencies, 95)), 2),
            "p99_ms": round(float(np.percentile(all_latencies, 99)), 2),
            "recall_min_class": min(r["recall_at_10"] for r in per_class.values()),
        },
        "rss_mb_after_queries": server_rss_mb(conn),
        f"recall>={TARGET_RECALL} in every class": all(r["recall_at_10"] >= TARGET_RECALL for r in per_class.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="number of scenes (default 100000)")
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per owner size class")
    parser.add_argument("--variants", default="vector,halfvec", help="comma-separated, in run order")
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument("--build-workers", type=int, default=1, help="max_parallel_maintenance_workers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the JSON result here too (after every variant)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="embedded server's VIDX_DATA_DIR (default: a temporary one, removed afterwards)")
    parser.add_argument("--ef-search", default=None,
                        help="comma-separated hnsw.ef_search values to measure on each built index "
                             "(default: the migration's own setting only)")
    parser.add_argument("--pools", default=None,
                        help="comma-separated smallest candidate pools for migration 009's function to measure on "
                             f"the halfvec index (default: the migration's own, {DEFAULT_POOL}; 100 is migration 008's)")
    parser.add_argument("--exact-max-rows", default=None,
                        help="comma-separated vidx.exact_search_max_rows values (owners with at most that many "
                             "scenes are searched exactly; 0: off, the planner decides; default: unset, the "
                             "migration's own bound, 200000)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database (and server) for inspection")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")

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
    result: dict = {"n": args.n, "owners": args.owners, "k": K, "cpu_count": os.cpu_count(),
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
                    "maintenance_work_mem": args.maintenance_work_mem, "build_workers": args.build_workers,
                    "variants": {}}

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

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
            cat = generate(args.n, args.owners, rng)
            result["generate_s"] = round(time.perf_counter() - t0, 1)
            owner_ids = [uuid.UUID(int=i + 1) for i in range(args.owners)]
            scene_ids, result["load_s"] = load(conn, cat, owner_ids)
            result["load_s"] = round(result["load_s"], 1)
            result["videos"] = int(len(cat.video_owner))
            picked = pick_owners(cat.sizes)
            result["classes"] = {name: {"owners": len(owners), "rows": [int(cat.sizes[o]) for o in owners]}
                                 for name, owners in picked.items()}
            workload = make_workload(cat, scene_ids, picked, args.queries, rng)
            result["rss_mb_after_load"] = server_rss_mb(conn)
            save()
            for variant in variants:
                index = VARIANTS[variant][0]
                built = build(conn, variant, args.maintenance_work_mem, args.build_workers)
                built["rss_mb_after_build"] = server_rss_mb(conn)
                pools = [int(p) for p in args.pools.split(",")] if args.pools and variant == "halfvec" else [None]
                for pool in pools:
                    if pool is not None:
                        install_functions(conn, variant, pool)
                    for ef in (args.ef_search.split(",") if args.ef_search else [None]):
                        if ef is not None:
                            conn.execute("ALTER FUNCTION search_scenes_by_visual_clip_embedding(vector, double "
                                         f"precision, integer, uuid, text, text) SET hnsw.ef_search = {int(ef)}")
                        for exact_max in (args.exact_max_rows.split(",") if args.exact_max_rows else [None]):
                            if exact_max is None:
                                conn.execute("RESET vidx.exact_search_max_rows")
                            else:
                                conn.execute(f"SET vidx.exact_search_max_rows = {int(exact_max)}")
                            figures = dict(built, hnsw_ef_search=function_setting(conn, "hnsw.ef_search"),
                                           candidate_pool=pool or DEFAULT_POOL,
                                           exact_search_max_rows=int(exact_max) if exact_max is not None
                                           else "default",
                                           **measure(conn, workload, owner_ids, index))
                            name = (variant + (f" pool={pool}" if pool else "") + (f" ef_search={int(ef)}" if ef else "")
                                    + (f" exact_max_rows={int(exact_max)}" if exact_max is not None else ""))
                            result["variants"][name] = figures
                            save()
                            print(f"{name}: {json.dumps(figures)}", file=sys.stderr, flush=True)
        if args.keep:
            print(f"kept: {url}", file=sys.stderr)
        else:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    finally:
        if tmp_dir is not None and not args.keep:
            embedded.stop(tmp_dir)
            shutil.rmtree(tmp_dir, ignore_errors=True)
    save()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
