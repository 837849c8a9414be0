"""Scene understanding: zero-shot labels, descriptions, multi-frame pooling (real open_clip, tiny model).

The tiny model's weights are random, so its labels mean nothing: these tests
check plumbing and invariants, not what a label says.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pytest

from pipeline import store
from pipeline.clip import labels as clip_labels
from pipeline.clip.vocabulary import BUILTIN_LABELS, load_vocabulary, parse_labels
from pipeline.core.config import load_settings
from pipeline.core.errors import ConfigError
from pipeline.core.types import Candidate, EmbeddingResult, FrameQuality
from pipeline.frames.multiframe import pool, select_frames
from pipeline.indexer import index_video
from pipeline.intake.naming import video_id_for
from pipeline.storage.sidecar import read_sidecar
from tests.fixtures.database import unit_vectors

OWNER = uuid.UUID("14141414-1414-1414-1414-141414141414")


@pytest.fixture
def understanding_env(clip_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The tiny model, with the text-embedding cache in this test's own directory."""
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "clip_cache"))
    clip_labels.forget_text_banks()
    yield clip_env
    clip_labels.forget_text_banks()


def _index(video: Path, settings, *, write_db: bool):
    vid = video_id_for(OWNER, str(video))
    return index_video(video, video_id=vid, owner_id=OWNER, settings=settings, write_db=write_db)


def test_top_labels_are_descending_probabilities(understanding_env) -> None:
    settings = understanding_env.settings()
    bank = clip_labels.text_bank(settings)
    assert bank.labels == BUILTIN_LABELS
    assert bank.label_matrix.shape == (len(BUILTIN_LABELS), 512)
    assert np.allclose(np.linalg.norm(bank.label_matrix, axis=1), 1.0, atol=1e-4)
    assert bank.logit_scale > 1.0
    for vector in unit_vectors(5, seed=14):
        got = clip_labels.top_labels(vector, bank, 5)
        scores = [item["score"] for item in got]
        assert len(got) == 5 and len({item["label"] for item in got}) == 5
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores) and sum(scores) <= 1.0 + 1e-3
        assert {item["label"] for item in got} <= set(BUILTIN_LABELS)
    everything = clip_labels.top_labels(unit_vectors(1, seed=3)[0], bank, len(BUILTIN_LABELS))
    assert math.isclose(sum(item["score"] for item in everything), 1.0, abs_tol=0.01)


def test_custom_vocabulary_file_replaces_the_builtin_one(understanding_env, tmp_path: Path, monkeypatch) -> None:
    vocab = tmp_path / "labels.txt"
    vocab.write_text("# my labels\nred lorry\n\nyellow lorry\nred lorry\n  a kettle  \n", encoding="utf-8")
    monkeypatch.setenv("VIDX_LABELS_FILE", str(vocab))
    monkeypatch.setenv("VIDX_LABELS_TOP_K", "10")
    settings = understanding_env.settings()
    assert load_vocabulary(settings.labels_file).labels == ("red lorry", "yellow lorry", "a kettle")
    bank = clip_labels.text_bank(settings)
    got = clip_labels.top_labels(unit_vectors(1)[0], bank, settings.labels_top_k)
    assert sorted(item["label"] for item in got) == ["a kettle", "red lorry", "yellow lorry"]
    assert math.isclose(sum(item["score"] for item in got), 1.0, abs_tol=0.01)


def test_labels_settings_fail_fast(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="VIDX_LABELS_FILE"):
        load_settings({"VIDX_LABELS_FILE": str(empty)})
    with pytest.raises(ConfigError, match="VIDX_LABELS_FILE"):
        load_settings({"VIDX_LABELS_FILE": str(tmp_path / "missing.txt")})
    with pytest.raises(ConfigError, match="VIDX_FRAMES_PER_SCENE"):
        load_settings({"VIDX_FRAMES_PER_SCENE": "6"})
    with pytest.raises(ConfigError, match="VIDX_LABELS_TOP_K"):
        load_settings({"VIDX_LABELS_TOP_K": "-1"})
    assert parse_labels(["a", " a ", "#b", "", "c"]) == ("a", "c")


def test_text_bank_is_cached_on_disk_per_model_and_vocabulary(understanding_env, monkeypatch) -> None:
    settings = understanding_env.settings()
    first = clip_labels.text_bank(settings)
    cached = list((settings.clip_cache_dir / clip_labels.CACHE_SUBDIR).glob("*.npz"))
    assert len(cached) == 1
    clip_labels.forget_text_banks()

    def no_model(*_args, **_kwargs):
        raise AssertionError("the cached vocabulary must not load the model")

    monkeypatch.setattr("pipeline.clip.loader.load_clip", no_model)
    again = clip_labels.text_bank(settings)
    assert np.array_equal(again.label_matrix, first.label_matrix) and again.logit_scale == first.logit_scale
    assert [name for name, _, _ in again.slots] == [name for name, _, _ in first.slots]


def test_indexed_scenes_carry_labels_in_sidecar_and_database(
    three_scene_video: Path, understanding_env, db_settings
) -> None:
    settings = understanding_env.settings()
    result = _index(three_scene_video, settings, write_db=True)
    doc = read_sidecar(settings.sidecar_dir, result.video_id)
    for scene in doc["scenes"]:
        assert len(scene["labels"]) == settings.labels_top_k
        assert scene["description"].startswith(scene["labels"][0]["label"] + ", ")
        assert "frames" not in scene  # VIDX_FRAMES_PER_SCENE=1: the seed's shape
    with store.connect(settings) as conn:
        rows = conn.execute(
            "SELECT scene_index, labels, description, id FROM scenes WHERE video_id = %s ORDER BY scene_index",
            (result.video_id,),
        ).fetchall()
        assert [(r[1], r[2]) for r in rows] == [(s["labels"], s["description"]) for s in doc["scenes"]]
        # the label filter of search returns only scenes carrying that label
        label = rows[1][1][0]["label"]
        wanted = {r[0] for r in rows if any(item["label"] == label for item in r[1])}
        query = np.asarray(doc["scenes"][0]["embedding_visual_clip"], dtype=np.float32)
        got = store.search_by_embedding(conn, query, owner_id=OWNER, threshold=-1, limit=10, label=label)
        assert {r["scene_index"] for r in got} == wanted
        labelled = conn.execute(
            "SELECT count(*) FROM scenes WHERE labels @> %s::jsonb", (f'[{{"label": "{label}"}}]',)
        ).fetchone()[0]
        assert labelled == len(wanted)


def test_no_embedding_no_labels(three_scene_video: Path, settings, monkeypatch) -> None:
    monkeypatch.setenv("CLIP_ENABLED", "false")
    result = _index(three_scene_video, load_settings(), write_db=False)
    assert all(s.labels is None and s.description is None for s in result.scenes)
    doc = read_sidecar(load_settings().sidecar_dir, result.video_id)
    assert all("labels" not in s for s in doc["scenes"])


def test_multi_frame_embedding_is_the_normalised_mean(three_scene_video: Path, understanding_env, monkeypatch) -> None:
    monkeypatch.setenv("VIDX_FRAMES_PER_SCENE", "3")
    settings = understanding_env.settings()
    result = _index(three_scene_video, settings, write_db=False)
    doc = read_sidecar(settings.sidecar_dir, result.video_id)
    for scene in doc["scenes"]:
        frames = scene["frames"]
        assert 2 <= len(frames) <= 3
        assert frames[0]["path"] == scene["best_frame"]["path"] and frames[0]["frame"] == scene["best_frame"]["frame"]
        assert len({f["frame"] for f in frames}) == len(frames)
        for frame in frames:
            assert (result.sidecar_dir / frame["path"]).is_file()
            assert scene["start_frame"] <= frame["frame"] <= scene["end_frame"]
        vectors = np.asarray([f["embedding"] for f in frames], dtype=np.float64)
        mean = vectors.mean(axis=0)
        expected = mean / np.linalg.norm(mean)
        assert np.allclose(scene["embedding_visual_clip"], expected, atol=1e-5)
        assert scene["labels"] and scene["visual_clip_metadata"]["error"] is None


def _quality(score: float, rejected: str | None = None) -> FrameQuality:
    return FrameQuality(quality_score=score, sharpness=score, exposure=1, contrast=1, colorfulness=1, rejected=rejected)


def test_frame_selection_and_pooling_rules() -> None:
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    ranked = [(Candidate(10, 0.4, image), _quality(0.9)), (Candidate(10, 0.4, image), _quality(0.9)),
              (Candidate(12, 0.5, image), _quality(0.8, "blurred")), (Candidate(14, 0.6, image), _quality(0.7))]
    assert [c.frame for c, _ in select_frames(ranked, 3)] == [10, 14]  # distinct, never a rejected extra
    a, b = unit_vectors(2, seed=9)
    meta = {"inference_time_ms": 2.0, "error": None}
    pooled = pool([EmbeddingResult(list(a), meta), EmbeddingResult(None, {"error": "Timeout after 2.0s"}),
                   EmbeddingResult(list(b), meta)])
    assert pooled.vector is not None
    assert np.allclose(pooled.vector, (a + b) / np.linalg.norm(a + b), atol=1e-6)
    assert pooled.metadata["inference_time_ms"] == 4.0
    failed = EmbeddingResult(None, {"error": "Image read error: x"})
    assert pool([failed, EmbeddingResult(None, {"error": "y"})]) is failed


def test_clip_disabled_understanding_never_imports_torch(tmp_path: Path) -> None:
    """The indexer's understanding hooks, `vidx show` and contact sheets cost nothing for torch with CLIP off."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pipeline.core.config import load_settings\n"
        "from pipeline.frames.multiframe import embed_records\n"
        "from pipeline.clip.understand import understand_records\n"
        "from pipeline.frames.sheet import Tile, render_sheet\n"
        "import worker.cli.understand_cmds\n"
        "from tests.fixtures.database import scene_records, unit_vectors\n"
        "s = load_settings({'CLIP_ENABLED': 'false', 'VIDX_FRAMES_PER_SCENE': '3'})\n"
        "records = scene_records(unit_vectors(2), null_at=(0, 1))\n"
        "results = embed_records(records, __import__('pathlib').Path('.'), s)\n"
        "assert all(r.vector is None for r in results)\n"
        "understand_records(records, s)\n"
        "assert all(r.labels is None and r.description is None for r in records)\n"
        "render_sheet([Tile(0, 0.0, 1.0, None, 'no embedding')], title='t')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
