"""Migrations on a real PostgreSQL: from empty, re-run, concurrent, and the pgvector checks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
import pytest

from pipeline import store
from pipeline.core.errors import ProcessingError
from pipeline.store import embedded, migrations
from pipeline.store.connection import PgvectorMissingError, ensure_pgvector


def _names() -> list[str]:
    return [m.name for m in migrations.discover()]


def test_migrate_from_empty_then_rerun(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        ensure_pgvector(conn)
        assert store.migrate(conn) == _names()
        assert store.migrate(conn) == []
        recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
        assert recorded == _names()

        indexes = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'scenes'").fetchall())
        hnsw = indexes["scenes_embedding_halfvec_hnsw_idx"]  # migration 008 replaced the vector(512) index
        assert "USING hnsw" in hnsw and "halfvec(512)" in hnsw and "halfvec_cosine_ops" in hnsw
        assert "scenes_embedding_visual_clip_hnsw_idx" not in indexes
        assert "btree (owner_id)" in indexes["scenes_owner_id_idx"]
        assert "UNIQUE" in indexes["scenes_video_scene_index_key"] and "(video_id, scene_index)" in indexes[
            "scenes_video_scene_index_key"
        ]
        column_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'scenes'::regclass AND attname = 'embedding_visual_clip'"
        ).fetchone()[0]
        assert column_type == "vector(512)"
        for fn in ("search_scenes_by_visual_clip_embedding", "search_similar_scenes"):
            assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (fn,)).fetchone()[0] == 1


def test_migration_files_are_idempotent_sql(empty_database_url: str) -> None:
    """Running every file again by hand (outside vidx's bookkeeping) changes nothing and fails nothing."""
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        store.migrate(conn)
        for migration in migrations.discover():
            with conn.transaction():
                conn.execute(migration.sql())


def test_concurrent_migrators_apply_each_file_once(empty_database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_database_url, autocommit=True) as conn:
                results.append(store.migrate(conn))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, len(_names())]


def test_migrate_on_non_autocommit_connection_commits(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn:
        assert store.migrate(conn) == _names()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert store.migrate(conn) == []


def test_failed_migration_is_rolled_back_and_named(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE ok_table (id int);")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE half_done (id int); SELECT no_such_column FROM ok_table;")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        with pytest.raises(ProcessingError, match="migration 002_broken failed"):
            store.migrate(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations")] == ["001_ok"]


def test_badly_named_migration_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(ProcessingError, match="NNN_lowercase_name"):
        migrations.discover(tmp_path)


class _FakeCursor:
    def __init__(self, row):
        self._row = row

    def fetchone(self):
        return self._row


class _FakeConnection:
    """Answers the pg_available_extensions query as a server without (or with an old) pgvector would."""

    def __init__(self, available):
        self.available = available

    def execute(self, sql, params=None):
        assert "pg_available_extensions" in sql
        return _FakeCursor(self.available)


def test_server_without_pgvector_gets_a_clear_error() -> None:
    with pytest.raises(PgvectorMissingError, match="no pgvector extension: install pgvector 0.8"):
        ensure_pgvector(_FakeConnection(None))


def test_old_pgvector_is_refused_with_the_fix() -> None:
    with pytest.raises(PgvectorMissingError, match="ALTER EXTENSION vector UPDATE"):
        ensure_pgvector(_FakeConnection(("0.8.0", "0.7.4")))
    with pytest.raises(PgvectorMissingError, match="upgrade the pgvector package"):
        ensure_pgvector(_FakeConnection(("0.7.4", "0.7.4")))


def test_real_server_has_pgvector_08(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        version = ensure_pgvector(conn)
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)


def test_fresh_embedded_cluster_is_tuned(database_url: str) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("an external server is tuned by its operator")
    with psycopg.connect(database_url, autocommit=True) as conn:
        value = conn.execute("SELECT setting::int * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0]
    assert value == embedded.shared_buffers_mb()
