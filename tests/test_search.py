"""The search RPCs on a real PostgreSQL + pgvector: ranking, threshold, tenants, the HNSW index."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from pipeline import store
from pipeline.core.errors import BadInputError
from tests.fixtures.database import (
    _create_database,
    _drop_database,
    index_scans,
    prefer_index_walks,
    probe_result,
    scene_records,
    with_database,
)

BIG = uuid.UUID("0000000b-0000-0000-0000-000000000001")  # 60% of the rows
SMALL = uuid.UUID("0000000c-0000-0000-0000-000000000001")  # 1% of the rows
TINY = uuid.UUID("0000000d-0000-0000-0000-000000000001")  # 3 rows, 2 of them embedded
REST = [uuid.UUID(int=0xE00 + i) for i in range(6)]
N_ROWS = 4000
PER_VIDEO = 40
HNSW_INDEX = "scenes_embedding_halfvec_hnsw_idx"  # migration 008: half-precision copies (009 keeps it)
OWNER_INDEX = "scenes_owner_id_idx"

HNSW_DEFINITION = "USING hnsw ((embedding_visual_clip::halfvec(512)) halfvec_cosine_ops)"

# The inner (index) query of search_scenes_by_visual_clip_embedding, for EXPLAIN
# (since migration 008 it orders by the indexed halfvec expression).
INNER_QUERY = """
    SELECT s.id, s.embedding_visual_clip <=> %(q)s AS distance
    FROM scenes s
    WHERE s.owner_id = %(owner)s AND s.embedding_visual_clip IS NOT NULL
    ORDER BY s.embedding_visual_clip::halfvec(512) <=> %(q)s::halfvec(512)
    LIMIT %(k)s
"""


def _clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Points around n/40 random centres: neighbours exist, as with CLIP embeddings."""
    centres = rng.standard_normal((max(1, n // 40), 512)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, 512)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    points = centres[rng.integers(0, len(centres), n)] + 0.9 * noise
    return points / np.linalg.norm(points, axis=1, keepdims=True)


class Dataset:
    def __init__(self, url: str, vectors: np.ndarray, owners: list[uuid.UUID], ids: list[uuid.UUID]):
        self.url = url
        self.vectors = vectors
        self.owners = np.array(owners)
        self.ids = np.array(ids)

    def exact(self, owner: uuid.UUID, query: np.ndarray, k: int) -> list[uuid.UUID]:
        rows = np.flatnonzero(self.owners == owner)
        return list(self.ids[rows[np.argsort(-(self.vectors[rows] @ query))[:k]]])

    def rows_of(self, owner: uuid.UUID) -> np.ndarray:
        return np.flatnonzero(self.owners == owner)


@pytest.fixture(scope="module")
def dataset(_pg_server) -> Iterator[Dataset]:
    """4000 scenes over 9 owners, loaded once for the module (tests only read, or roll back)."""
    if _pg_server.can_create:
        name = f"vidx_search_{uuid.uuid4().hex[:8]}"
        _create_database(_pg_server.admin_url, name, _pg_server.template)
        url = with_database(_pg_server.admin_url, name)
    else:  # a server that refuses CREATE DATABASE: the shared test database, emptied
        name = None
        url = _pg_server.admin_url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE scenes, videos CASCADE")
    rng = np.random.default_rng(42)
    vectors = _clustered(N_ROWS, rng)
    sizes = {BIG: 2400, SMALL: 40}
    rest = N_ROWS - sum(sizes.values())
    for i, owner in enumerate(REST):
        sizes[owner] = rest // len(REST) + (1 if i < rest % len(REST) else 0)
    owners: list[uuid.UUID] = []
    ids: list[uuid.UUID] = []
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"DROP INDEX {HNSW_INDEX}")  # bulk load, then build: much faster than row by row
        start = 0
        for owner, count in sizes.items():
            for first in range(0, count, PER_VIDEO):
                chunk = vectors[start + first : start + min(count, first + PER_VIDEO)]
                video_id = uuid.uuid4()
                store.replace_scenes(conn, video_id=video_id, owner_id=owner, source=f"{owner}/{first}.mp4",
                                     probe=probe_result(), scenes=scene_records(chunk))
                got = conn.execute(
                    "SELECT id FROM scenes WHERE video_id = %s ORDER BY scene_index", (video_id,)
                ).fetchall()
                ids.extend(r[0] for r in got)
                owners.extend([owner] * len(chunk))
            start += count
        tiny = scene_records(_clustered(3, rng), null_at=(1,))
        store.replace_scenes(conn, video_id=uuid.uuid4(), owner_id=TINY, source="tiny.mp4", probe=probe_result(),
                             scenes=tiny)
        conn.execute(
            f"CREATE INDEX {HNSW_INDEX} ON scenes {HNSW_DEFINITION}"
        )
        conn.execute("ANALYZE scenes")
    yield Dataset(url, vectors, owners, ids)
    if name is not None:
        _drop_database(_pg_server.admin_url, name)


@pytest.fixture
def conn(dataset: Dataset) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dataset.url, autocommit=True) as connection:
        register_vector(connection)
        yield connection


def test_a_scenes_own_embedding_ranks_first(conn, dataset: Dataset) -> None:
    for row in dataset.rows_of(BIG)[:: 400]:
        results = store.search_by_embedding(conn, dataset.vectors[row], owner_id=BIG, threshold=-1, limit=10)
        assert results[0]["id"] == dataset.ids[row]
        assert results[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert len(results) == 10
        similarities = [r["similarity"] for r in results]
        assert similarities == sorted(similarities, reverse=True)
        assert {"video_id", "scene_index", "start_s", "end_s", "frame_path", "source"} <= set(results[0])


def test_threshold_is_applied(conn, dataset: Dataset) -> None:
    query = dataset.vectors[dataset.rows_of(BIG)[7]]
    loose = store.search_by_embedding(conn, query, owner_id=BIG, threshold=-1, limit=50)
    cut = float(np.median([r["similarity"] for r in loose[1:]]))
    strict = store.search_by_embedding(conn, query, owner_id=BIG, threshold=cut, limit=50)
    assert 1 <= len(strict) < len(loose)
    assert all(r["similarity"] >= cut for r in strict)
    assert [r["id"] for r in strict] == [r["id"] for r in loose if r["similarity"] >= cut]
    only_itself = store.search_by_embedding(conn, query, owner_id=BIG, threshold=0.9999, limit=50)
    assert [r["id"] for r in only_itself] == [dataset.ids[dataset.rows_of(BIG)[7]]]


def test_owners_never_see_each_others_rows(conn, dataset: Dataset) -> None:
    scene_owner = dict(zip(dataset.ids, dataset.owners, strict=True))
    for owner, donor in ((SMALL, BIG), (BIG, SMALL), (REST[0], SMALL)):
        # query with another owner's exact vectors: their rows would be the perfect matches
        for row in dataset.rows_of(donor)[:3]:
            results = store.search_by_embedding(conn, dataset.vectors[row], owner_id=owner, threshold=-1, limit=100)
            assert results and all(scene_owner[r["id"]] == owner for r in results)
    victim = dataset.ids[dataset.rows_of(BIG)[0]]
    with pytest.raises(BadInputError, match="no scene"):
        store.search_similar(conn, victim, owner_id=SMALL, threshold=-1, limit=10)
    unknown_owner = store.search_by_embedding(conn, dataset.vectors[0], owner_id=uuid.uuid4(), threshold=-1, limit=10)
    assert unknown_owner == []


def test_null_owner_is_refused(conn, dataset: Dataset) -> None:
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="filter_user_id must not be NULL"):
        conn.execute(
            "SELECT * FROM search_scenes_by_visual_clip_embedding(%s, 0, 10, NULL)", (dataset.vectors[0],)
        ).fetchall()
    scene = dataset.ids[0]
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("SELECT * FROM search_similar_scenes(%s, 0, 10, NULL)", (scene,)).fetchall()
    with pytest.raises(BadInputError, match="needs an owner"):
        store.search_by_embedding(conn, dataset.vectors[0], owner_id=None, threshold=0, limit=10)


def test_bad_arguments_are_bad_input(conn, dataset: Dataset) -> None:
    with pytest.raises(BadInputError, match="limit"):
        store.search_by_embedding(conn, dataset.vectors[0], owner_id=BIG, threshold=0, limit=0)
    with pytest.raises(BadInputError, match="threshold"):
        store.search_by_embedding(conn, dataset.vectors[0], owner_id=BIG, threshold=1.5, limit=5)
    with pytest.raises(BadInputError, match="256 dimensions"):
        store.search_by_embedding(conn, dataset.vectors[0][:256], owner_id=BIG, threshold=0, limit=5)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="match_count"):
        conn.execute("SELECT * FROM search_scenes_by_visual_clip_embedding(%s, 0, 0, %s)",
                     (dataset.vectors[0], BIG)).fetchall()


def test_inner_query_plan_uses_the_hnsw_index(conn, dataset: Dataset) -> None:
    query = dataset.vectors[dataset.rows_of(BIG)[3]]
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute("SET LOCAL hnsw.ef_search = 100")
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN " + INNER_QUERY, {"q": query, "owner": BIG, "k": 10}).fetchall()
        )
    assert f"Index Scan using {HNSW_INDEX}" in plan, plan


def test_the_function_itself_scans_the_hnsw_index(conn, dataset: Dataset) -> None:
    """For owners above migration 009's exact bound, where the walk is the cheaper plan
    (forced here: an exact sort of BIG's 2,400 rows is cheaper than walking the graph for
    1,000 candidates, and the planner says so), the function walks the HNSW index."""
    query = dataset.vectors[dataset.rows_of(BIG)[5]]
    exact_before = store.search_by_embedding(conn, query, owner_id=BIG, threshold=-1, limit=10)
    _forced_index_path(conn)
    before = index_scans(conn, HNSW_INDEX)
    walked = store.search_by_embedding(conn, query, owner_id=BIG, threshold=-1, limit=10)
    assert index_scans(conn, HNSW_INDEX) > before
    assert [r["id"] for r in exact_before] == dataset.exact(BIG, query, 10)
    assert len({r["id"] for r in walked} & set(dataset.exact(BIG, query, 10))) >= 9


def _set_exact_max_rows(conn: psycopg.Connection, value: str) -> None:
    conn.execute("SELECT set_config('vidx.exact_search_max_rows', %s, false)", (value,))


def test_owners_up_to_the_exact_bound_are_searched_exactly(conn, dataset: Dataset) -> None:
    """vidx.exact_search_max_rows (migration 009, default 200,000): an owner with at most that
    many scenes is searched by exact distance even where the planner would walk the graph; a
    bigger owner still walks it."""
    _forced_index_path(conn)  # the planner would walk the HNSW index for everyone
    queries = [dataset.vectors[row] for row in dataset.rows_of(REST[0])[:5]]
    _set_exact_max_rows(conn, str(len(dataset.rows_of(SMALL))))  # SMALL is within the bound, BIG is not
    hnsw_before = index_scans(conn, HNSW_INDEX)
    for query in queries:
        got = store.search_by_embedding(conn, query, owner_id=SMALL, threshold=-1, limit=20)
        assert [r["id"] for r in got] == dataset.exact(SMALL, query, 20)
    assert index_scans(conn, HNSW_INDEX) == hnsw_before  # never touched the graph
    store.search_by_embedding(conn, queries[0], owner_id=BIG, threshold=-1, limit=10)
    assert index_scans(conn, HNSW_INDEX) > hnsw_before
    _set_exact_max_rows(conn, "0")  # 0: off, the planner decides (migration 008's behaviour)
    store.search_by_embedding(conn, queries[1], owner_id=SMALL, threshold=-1, limit=20)
    walks = index_scans(conn, HNSW_INDEX)
    assert walks > hnsw_before + 1
    conn.execute("RESET vidx.exact_search_max_rows")  # unset: the default bound, 200,000 scenes
    for owner in (SMALL, BIG):
        query = queries[2]
        got = store.search_by_embedding(conn, query, owner_id=owner, threshold=-1, limit=10)
        assert [r["id"] for r in got] == dataset.exact(owner, query, 10)
    assert index_scans(conn, HNSW_INDEX) == walks


def test_the_largest_exact_bound_is_exact_for_everyone(conn, dataset: Dataset) -> None:
    _forced_index_path(conn)
    _set_exact_max_rows(conn, " 999999999999999999 ")  # 18 digits, spaces around: still a number
    hnsw_before = index_scans(conn, HNSW_INDEX)
    query = dataset.vectors[dataset.rows_of(REST[1])[0]]
    got = store.search_by_embedding(conn, query, owner_id=BIG, threshold=-1, limit=10)
    assert [r["id"] for r in got] == dataset.exact(BIG, query, 10)
    assert index_scans(conn, HNSW_INDEX) == hnsw_before


@pytest.mark.parametrize("value", ["lots", "1e99", "99999999999999999999", "12 000", "0x10"])
def test_a_bad_exact_bound_is_one_clear_error(conn, dataset: Dataset, value: str) -> None:
    _set_exact_max_rows(conn, value)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="exact_search_max_rows must be a whole number"):
        conn.execute("SELECT * FROM search_scenes_by_visual_clip_embedding(%s, -1, 5, %s)",
                     (dataset.vectors[0], SMALL)).fetchall()


def _forced_index_path(conn: psycopg.Connection) -> None:
    """Make the planner take the HNSW path even for a small owner (it would rightly prefer
    the owner_id btree and an exact sort here, and migration 009 searches owners of up to
    200k scenes exactly before asking it), to test iterative scans."""
    _set_exact_max_rows(conn, "0")
    prefer_index_walks(conn)


def test_one_percent_tenant_gets_match_count_rows_through_the_index(conn, dataset: Dataset) -> None:
    k = 20
    rows = dataset.rows_of(SMALL)
    assert len(rows) == N_ROWS // 100
    _forced_index_path(conn)  # session settings of this test's own connection
    hnsw_before, owner_before = index_scans(conn, HNSW_INDEX), index_scans(conn, OWNER_INDEX)
    recalls = []
    for row in dataset.rows_of(BIG)[:10]:  # queries land in other owners' neighbourhoods
        query = dataset.vectors[row]
        got = store.search_by_embedding(conn, query, owner_id=SMALL, threshold=-1, limit=k)
        assert len(got) == k
        recalls.append(len({r["id"] for r in got} & set(dataset.exact(SMALL, query, k))) / k)
    hnsw_after, owner_after = index_scans(conn, HNSW_INDEX), index_scans(conn, OWNER_INDEX)
    assert hnsw_after - hnsw_before >= 10  # the iterative HNSW scan served every query ...
    assert owner_after == owner_before  # ... without the exact fallback
    assert np.mean(recalls) >= 0.9


def test_exact_fallback_when_the_index_walk_ends_short(conn, dataset: Dataset) -> None:
    k = 20
    with conn.transaction():
        # per-test change, rolled back: let the iterative scan give up after 30 tuples
        conn.execute("SELECT '[0]'::vector")  # pgvector loaded: its settings are known
        conn.execute(
            "ALTER FUNCTION search_scenes_by_visual_clip_embedding(vector, double precision, integer, uuid, text, text) "
            "SET hnsw.max_scan_tuples = 30"
        )
        _forced_index_path(conn)
        for row in dataset.rows_of(BIG)[:5]:
            query = dataset.vectors[row]
            got = store.search_by_embedding(conn, query, owner_id=SMALL, threshold=-1, limit=k)
            assert [r["id"] for r in got] == dataset.exact(SMALL, query, k)
        raise psycopg.Rollback()  # undo the ALTER FUNCTION


def test_tenant_smaller_than_match_count_gets_all_its_embedded_rows(conn, dataset: Dataset) -> None:
    got = store.search_by_embedding(conn, dataset.vectors[0], owner_id=TINY, threshold=-1, limit=10)
    assert len(got) == 2  # 3 scenes, one with a NULL embedding


def test_null_embeddings_are_stored_and_skipped(conn, dataset: Dataset) -> None:
    null_ids = {r[0] for r in conn.execute(
        "SELECT id FROM scenes WHERE owner_id = %s AND embedding_visual_clip IS NULL", (TINY,))}
    assert len(null_ids) == 1
    meta = conn.execute("SELECT visual_clip_metadata FROM scenes WHERE id = %s", (next(iter(null_ids)),)).fetchone()[0]
    assert meta["error"].startswith("Timeout after")
    got = store.search_by_embedding(conn, dataset.vectors[0], owner_id=TINY, threshold=-1, limit=1000)
    assert not null_ids & {r["id"] for r in got}
    with pytest.raises(BadInputError, match="has no embedding"):
        store.search_similar(conn, next(iter(null_ids)), owner_id=TINY, threshold=-1, limit=10)


def test_search_similar_excludes_the_scene_itself(conn, dataset: Dataset) -> None:
    row = dataset.rows_of(BIG)[11]
    scene_id = dataset.ids[row]
    got = store.search_similar(conn, scene_id, owner_id=BIG, threshold=-1, limit=10)
    assert len(got) == 10 and scene_id not in {r["id"] for r in got}
    direct = store.search_by_embedding(conn, dataset.vectors[row], owner_id=BIG, threshold=-1, limit=11)
    assert [r["id"] for r in got] == [r["id"] for r in direct if r["id"] != scene_id][:10]
    with pytest.raises(BadInputError, match="no scene"):
        store.search_similar(conn, uuid.uuid4(), owner_id=BIG, threshold=-1, limit=10)
