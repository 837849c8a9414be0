"""Migrations 008 (halfvec HNSW index) and 009 (candidate pool, exact bound) on a real PostgreSQL + pgvector."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from pipeline import store
from pipeline.store import migrations
from pipeline.store.connection import ensure_pgvector
from tests.fixtures.database import index_scans, prefer_index_walks, probe_result, scene_records, unit_vectors

OWNER = uuid.UUID(int=0x5CA1E)
HALFVEC_INDEX = "scenes_embedding_halfvec_hnsw_idx"
VECTOR_INDEX = "scenes_embedding_visual_clip_hnsw_idx"
SIGNATURES = """
    SELECT proname, pg_get_function_identity_arguments(oid), pg_get_function_result(oid)
    FROM pg_proc WHERE proname IN ('search_scenes_by_visual_clip_embedding', 'search_similar_scenes')
    ORDER BY proname
"""


def _migrate_before_008(conn: psycopg.Connection, tmp_path: Path) -> None:
    """The schema as a database had it before this migration (001..007 minus 008)."""
    older = tmp_path / "older_migrations"
    older.mkdir()
    for migration in migrations.discover():
        if migration.number < 8:
            shutil.copy(migration.path, older / migration.path.name)
    ensure_pgvector(conn)
    store.migrate(conn, older)


def _indexes(conn: psycopg.Connection) -> dict[str, tuple[str, bool]]:
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'scenes'::regclass"
    ).fetchall()
    return {name: (definition, valid) for name, definition, valid in rows}


def _near_duplicates(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` re-takes of one shot (cosine 0.995..0.9998 to it) and a query among them.

    Their distances to the query lie ~2e-5 apart, as close as half precision's
    rounding of a 512-d dot product: ranked by halfvec alone, the top 10 differs
    from the exact top 10 for these seeds (checked when the test was written)."""
    base = unit_vectors(1, seed=seed)[0]
    noise = unit_vectors(count + 1, seed=seed + 1)
    spread = np.random.default_rng(seed).permutation(np.linspace(0.02, 0.1, count + 1))[:, None]
    points = base + spread * noise
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points[:count].astype(np.float32), points[count].astype(np.float32)


def _exact(vectors: np.ndarray, ids: list[uuid.UUID], query: np.ndarray, k: int) -> list[uuid.UUID]:
    return [ids[i] for i in np.argsort(-(vectors.astype(np.float64) @ query.astype(np.float64)))[:k]]


def _store(conn: psycopg.Connection, vectors: np.ndarray, owner: uuid.UUID = OWNER) -> list[uuid.UUID]:
    video_id = uuid.uuid4()
    store.replace_scenes(conn, video_id=video_id, owner_id=owner, source=f"/v/{video_id}.mp4",
                         probe=probe_result(), scenes=scene_records(vectors))
    rows = conn.execute("SELECT id FROM scenes WHERE video_id = %s ORDER BY scene_index", (video_id,)).fetchall()
    return [r[0] for r in rows]


def test_008_upgrades_a_database_with_scenes_keeping_signatures_and_answers(empty_database_url: str,
                                                                            tmp_path: Path) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        _migrate_before_008(conn, tmp_path)
        register_vector(conn)
        assert VECTOR_INDEX in _indexes(conn) and HALFVEC_INDEX not in _indexes(conn)
        vectors = unit_vectors(300, seed=3)
        ids = _store(conn, vectors)
        signatures_before = conn.execute(SIGNATURES).fetchall()
        query = vectors[17]
        before = store.search_by_embedding(conn, query, owner_id=OWNER, threshold=-1, limit=10)

        assert store.migrate(conn) == [m.name for m in migrations.discover() if m.number >= 8]

        indexes = _indexes(conn)
        assert VECTOR_INDEX not in indexes  # nothing reads it any more
        definition, valid = indexes[HALFVEC_INDEX]
        assert valid and "hnsw" in definition and "halfvec(512)" in definition and "halfvec_cosine_ops" in definition
        assert conn.execute(SIGNATURES).fetchall() == signatures_before
        after = store.search_by_embedding(conn, query, owner_id=OWNER, threshold=-1, limit=10)
        assert [r["id"] for r in after] == [r["id"] for r in before] == _exact(vectors, ids, query, 10)
        assert [r["similarity"] for r in after] == pytest.approx([r["similarity"] for r in before], abs=1e-6)
        four_args = conn.execute("SELECT id FROM search_scenes_by_visual_clip_embedding(%s, -1, 5, %s)",
                                 (query, OWNER)).fetchall()
        assert [r[0] for r in four_args] == [r["id"] for r in after][:5]


def test_008_rebuilds_an_index_left_invalid_by_a_concurrent_build(empty_database_url: str, tmp_path: Path) -> None:
    """docs/scaling.md tells operators to pre-build the index CONCURRENTLY; an interrupted
    build leaves it INVALID, and the migration must not take that for done."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        _migrate_before_008(conn, tmp_path)
        register_vector(conn)
        _store(conn, unit_vectors(50, seed=5))
        conn.execute(f"CREATE INDEX CONCURRENTLY {HALFVEC_INDEX} ON scenes "
                     "USING hnsw ((embedding_visual_clip::halfvec(512)) halfvec_cosine_ops)")
        try:
            conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (HALFVEC_INDEX,))
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("marking an index invalid needs a superuser (the embedded server is one)")
        assert _indexes(conn)[HALFVEC_INDEX][1] is False
        store.migrate(conn)
        assert _indexes(conn)[HALFVEC_INDEX][1] is True


def test_prebuilt_index_is_kept(empty_database_url: str, tmp_path: Path) -> None:
    """The documented upgrade path for big tables: CREATE INDEX CONCURRENTLY first, then migrate."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        _migrate_before_008(conn, tmp_path)
        conn.execute(f"CREATE INDEX CONCURRENTLY {HALFVEC_INDEX} ON scenes "
                     "USING hnsw ((embedding_visual_clip::halfvec(512)) halfvec_cosine_ops)")
        oid = conn.execute("SELECT %s::regclass::oid", (HALFVEC_INDEX,)).fetchone()[0]
        store.migrate(conn)
        assert conn.execute("SELECT %s::regclass::oid", (HALFVEC_INDEX,)).fetchone()[0] == oid


def test_near_duplicate_shots_rank_in_exact_order(db_conn: psycopg.Connection) -> None:
    """Half precision alone would swap re-takes whose distances differ in the 4th digit;
    the function re-ranks max(2 x match_count, 100) candidates by full-precision distance."""
    vectors, query = _near_duplicates(200, seed=11)
    ids = _store(db_conn, vectors)
    _store(db_conn, unit_vectors(400, seed=12), owner=uuid.UUID(int=0xD1FF))  # another owner's rows
    for k in (1, 10, 50):
        got = store.search_by_embedding(db_conn, query, owner_id=OWNER, threshold=-1, limit=k)
        assert [r["id"] for r in got] == _exact(vectors, ids, query, k)
        exact_similarity = float(vectors[ids.index(got[0]["id"])].astype(np.float64) @ query)
        assert got[0]["similarity"] == pytest.approx(exact_similarity, abs=1e-6)  # full precision, not halfvec


def test_near_duplicates_through_the_halfvec_index(db_conn: psycopg.Connection) -> None:
    """The same, forced onto the HNSW walk (an owner this small is searched exactly otherwise)."""
    vectors, query = _near_duplicates(300, seed=21)
    ids = _store(db_conn, vectors)
    db_conn.execute("ANALYZE scenes")
    db_conn.execute("SET vidx.exact_search_max_rows = 0")  # 009's exact path for owners up to 200k scenes off
    prefer_index_walks(db_conn)
    got = store.search_by_embedding(db_conn, query, owner_id=OWNER, threshold=-1, limit=10)
    exact = _exact(vectors, ids, query, 10)
    assert len(got) == 10
    assert len({r["id"] for r in got} & set(exact)) >= 9
    similarities = [r["similarity"] for r in got]
    assert similarities == sorted(similarities, reverse=True)


def test_the_exact_bound_set_for_a_database_applies_to_every_new_connection(empty_database_url: str) -> None:
    """The documented operator path (migration 009): ALTER DATABASE ... SET vidx.exact_search_max_rows."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        ensure_pgvector(conn)
        store.migrate(conn)
        register_vector(conn)
        vectors, query = _near_duplicates(300, seed=31)
        ids = _store(conn, vectors)
        conn.execute("ANALYZE scenes")
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{database}" SET vidx.exact_search_max_rows = 300')
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        register_vector(conn)
        assert conn.execute("SHOW vidx.exact_search_max_rows").fetchone()[0] == "300"
        prefer_index_walks(conn)  # the planner would walk the graph
        before = index_scans(conn, HALFVEC_INDEX)
        got = store.search_by_embedding(conn, query, owner_id=OWNER, threshold=-1, limit=10)
        assert index_scans(conn, HALFVEC_INDEX) == before  # 300 rows <= 300: exact
        assert [r["id"] for r in got] == _exact(vectors, ids, query, 10)
