"""Model identity and label filters in the search RPC (real PostgreSQL with pgvector)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import psycopg

from pipeline import store
from pipeline.clip.identity import model_identity, weights_checksum
from pipeline.core.config import load_settings
from tests.fixtures.database import probe_result, scene_records, unit_vectors

OWNER = uuid.UUID(int=0xA11CE)
OTHER_OWNER = uuid.UUID(int=0xB0B)


def _store_video(conn, owner, vectors, *, model, labels=None):
    video_id = uuid.uuid4()
    records = scene_records(vectors)
    for i, record in enumerate(records):
        record.embedding_model = model
        if labels is not None:
            record.labels = labels[i]
    store.replace_scenes(conn, video_id=video_id, owner_id=owner, source=f"/v/{video_id}.mp4",
                         probe=probe_result(), scenes=records)
    return video_id


def test_a_query_meets_only_embeddings_of_its_own_model(db_conn) -> None:
    vectors = unit_vectors(6, seed=1)
    a = _store_video(db_conn, OWNER, vectors[:3], model="ViT-B-32/openai")
    b = _store_video(db_conn, OWNER, vectors[3:], model="ViT-B-16/laion2b")
    query = vectors[3]  # identical to a scene of model B
    got = store.search_by_embedding(db_conn, query, owner_id=OWNER, threshold=-1, limit=10, model="ViT-B-32/openai")
    assert {r["video_id"] for r in got} == {a}
    assert all(r["embedding_model"] == "ViT-B-32/openai" for r in got)
    got_b = store.search_by_embedding(db_conn, query, owner_id=OWNER, threshold=-1, limit=10, model="ViT-B-16/laion2b")
    assert {r["video_id"] for r in got_b} == {b}
    assert got_b[0]["similarity"] > 0.999
    # no model given: the seed's behaviour, every embedding of the owner
    assert len(store.search_by_embedding(db_conn, query, owner_id=OWNER, threshold=-1, limit=10)) == 6


def test_similar_scenes_stay_within_the_scene_model(db_conn) -> None:
    vectors = unit_vectors(6, seed=2)
    a = _store_video(db_conn, OWNER, vectors[:3], model="m1/x")
    _store_video(db_conn, OWNER, vectors[3:], model="m2/y")
    scene = db_conn.execute("SELECT id FROM scenes WHERE video_id = %s AND scene_index = 0", (a,)).fetchone()[0]
    got = store.search_similar(db_conn, scene, owner_id=OWNER, threshold=-1, limit=10)
    assert len(got) == 2 and {r["video_id"] for r in got} == {a}


def test_label_filter_returns_only_labelled_scenes_of_the_owner(db_conn) -> None:
    vectors = unit_vectors(4, seed=3)
    labels = [[{"label": "dog", "score": 0.9}], [{"label": "cat", "score": 0.8}],
              [{"label": "car", "score": 0.7}, {"label": "dog", "score": 0.1}], None]
    _store_video(db_conn, OWNER, vectors, model="m/x", labels=labels)
    _store_video(db_conn, OTHER_OWNER, vectors, model="m/x", labels=labels)
    got = store.search_by_embedding(db_conn, vectors[0], owner_id=OWNER, threshold=-1, limit=10, label="dog")
    assert sorted(r["scene_index"] for r in got) == [0, 2]
    assert all(any(lab["label"] == "dog" for lab in r["labels"]) for r in got)
    plan = db_conn.execute(
        "EXPLAIN SELECT id FROM scenes WHERE labels @> %s::jsonb", ('[{"label": "dog"}]',)
    ).fetchall()
    assert plan  # the containment query the GIN index serves is valid SQL on this schema


def test_four_argument_signature_still_works(db_conn) -> None:
    vectors = unit_vectors(3, seed=4)
    _store_video(db_conn, OWNER, vectors, model="m/x")
    rows = db_conn.execute(
        "SELECT id, similarity FROM search_scenes_by_visual_clip_embedding(%s, -1, 5, %s)", (vectors[0], OWNER)
    ).fetchall()
    assert len(rows) == 3


def test_migration_backfills_identity_of_older_rows(empty_database_url: str) -> None:
    """Rows written before migration 004 get '<model_name>/<pretrained>' from their metadata."""
    from pipeline.store import migrations

    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        from pipeline.store.connection import ensure_pgvector

        ensure_pgvector(conn)
        for migration in migrations.discover():
            if migration.number < 4:
                conn.execute(migration.path.read_text())
        video = uuid.uuid4()
        conn.execute("INSERT INTO videos (id, owner_id, source, status) VALUES (%s, %s, 'x', 'done')", (video, OWNER))
        conn.execute(
            "INSERT INTO scenes (video_id, owner_id, scene_index, start_frame, end_frame, start_s, end_s, "
            "embedding_visual_clip, visual_clip_metadata) VALUES (%s, %s, 0, 0, 1, 0, 1, %s::vector, %s)",
            (video, OWNER, str([0.1] * 512), '{"model_name": "ViT-B-32", "pretrained": "openai"}'),
        )
        for migration in migrations.discover():
            if migration.number == 4:
                conn.execute(migration.path.read_text())
        assert conn.execute("SELECT embedding_model FROM scenes").fetchone()[0] == "ViT-B-32/openai"


def test_identity_names_the_model_and_the_checkpoint_bytes(tmp_path: Path) -> None:
    settings = load_settings({})
    assert model_identity(settings) == "ViT-B-32/openai"
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"first weights")
    first = model_identity(dataclasses.replace(settings, clip_checkpoint=weights))
    assert first.startswith("ViT-B-32/openai@sha256:") and len(first.split(":")[-1]) == 16
    weights.write_bytes(b"other weights, other model")
    second = model_identity(dataclasses.replace(settings, clip_checkpoint=weights))
    assert second != first
    assert weights_checksum(weights) == (tmp_path / "w.pt.sha256").read_text().split()[0]
