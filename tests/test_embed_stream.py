"""CLIP overlapped with decoding gives exactly the sequential path's results (real tiny model, real video)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipeline.indexer as indexer
from pipeline.clip import FrameToEmbed, embed_frames, reset_model
from pipeline.clip.stream import OverlappedEmbedding
from pipeline.indexer import index_video
from pipeline.intake.naming import video_id_for
from pipeline.storage.sidecar import read_sidecar

OWNER = uuid.UUID("13131313-1313-1313-1313-131313131313")
VOLATILE = {"created_at", "inference_time_ms"}  # the clock's, not the embedding's


def _frames(directory: Path, count: int) -> list[FrameToEmbed]:
    frames = []
    for i in range(count):
        path = directory / f"scene_{i:04d}.jpg"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(path)
        frames.append(FrameToEmbed(path, {"quality_score": i / 10}))
    return frames


def _comparable(results) -> list[tuple]:
    return [(r.vector, {k: v for k, v in r.metadata.items() if k not in VOLATILE}) for r in results]


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_overlapped_results_equal_the_sequential_ones(clip_env, tmp_path, batch_size):
    frames = _frames(tmp_path, 5)
    frames[3].path.write_bytes(b"not a jpeg")  # degrades to NULL with its reason, in its place
    settings = clip_env.settings()
    sequential = embed_frames(frames, settings, batch_size=batch_size)
    with OverlappedEmbedding(settings, batch_size=batch_size) as embedding:
        for frame in frames:
            embedding.add(frame)
        overlapped = embedding.results()
    assert _comparable(overlapped) == _comparable(sequential)  # vectors bit for bit: same batches
    assert overlapped[3].vector is None and overlapped[3].metadata["error"].startswith("Image read error")


def test_scenes_are_embedded_before_input_ends(clip_env, tmp_path):
    """Full batches run while scenes are still arriving (decoding goes on meanwhile)."""
    frames = _frames(tmp_path, 3)
    with OverlappedEmbedding(clip_env.settings(), batch_size=1) as embedding:
        embedding.add(frames[0])
        _wait_for(lambda: embedding.embedded == 1)
        embedding.add(frames[1])
        _wait_for(lambda: embedding.embedded == 2)
        embedding.add(frames[2])
        results = embedding.results()
    assert [r.vector is not None for r in results] == [True, True, True]
    assert embedding.busy_ms > 0


def test_model_load_failure_degrades_every_scene_as_sequentially(clip_env, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    settings = clip_env.settings(clip_checkpoint=bad)
    frames = _frames(tmp_path, 3)
    with OverlappedEmbedding(settings) as embedding:
        for frame in frames:
            embedding.add(frame)
        results = embedding.results()
    assert [r.vector for r in results] == [None, None, None]
    assert all(r.metadata["error"].startswith("Model load failed: ") for r in results)
    reset_model()


def test_leaving_on_an_error_abandons_without_waiting(clip_env, tmp_path):
    frames = _frames(tmp_path, 2)
    with pytest.raises(RuntimeError), OverlappedEmbedding(clip_env.settings(), batch_size=16) as embedding:
        embedding.add(frames[0])
        raise RuntimeError("decoding failed")
    assert embedding._thread is not None
    embedding._thread.join(60)
    assert not embedding._thread.is_alive() and embedding.embedded == 0


def test_indexing_with_overlap_equals_embedding_afterwards(three_scene_video, clip_env, tmp_path, monkeypatch):
    """index_video's stored vectors are those of embedding its best frames afterwards, in the same batches."""
    monkeypatch.setattr(indexer, "OverlappedEmbedding", functools.partial(OverlappedEmbedding, batch_size=1))
    settings = clip_env.settings(sidecar_dir=tmp_path / "sc")
    vid = video_id_for(OWNER, str(three_scene_video))
    result = index_video(three_scene_video, video_id=vid, owner_id=OWNER, settings=settings, write_db=False)
    doc = read_sidecar(settings.sidecar_dir, vid)
    frames = [FrameToEmbed(result.sidecar_dir / s["best_frame"]["path"], s["best_frame"]["quality"]) for s in doc["scenes"]]
    afterwards = embed_frames(frames, settings, batch_size=1)
    assert [s["embedding_visual_clip"] for s in doc["scenes"]] == [r.vector for r in afterwards]
    assert [s["visual_clip_metadata"]["error"] for s in doc["scenes"]] == [None, None, None]
    assert "embed_busy_ms" in doc["timing"]


def test_clip_disabled_starts_nothing_and_never_imports_torch(tmp_path):
    code = (
        "import sys, threading; from pathlib import Path\n"
        "from pipeline.clip import FrameToEmbed\n"
        "from pipeline.core.config import load_settings\n"
        "from pipeline.clip.stream import OverlappedEmbedding\n"
        "with OverlappedEmbedding(load_settings({'CLIP_ENABLED': 'false'})) as e:\n"
        "    e.add(FrameToEmbed(Path('f.jpg'), {'quality_score': 0.4}))\n"
        "    (r,) = e.results()\n"
        "assert r.vector is None and r.metadata['error'].startswith('CLIP disabled')\n"
        "assert threading.active_count() == 1\n"
        "import pipeline.indexer\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
