"""CLIP stage through the real CLIP_CHECKPOINT path with a tiny open_clip model (no downloads)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipeline.clip.singleton as singleton
from pipeline.clip import (
    ClipUnavailableError,
    FrameToEmbed,
    embed_frames,
    encode_image,
    encode_text,
    get_model,
    reset_model,
)
from pipeline.clip.preprocess import capped_size, load_image
from pipeline.core.errors import BadInputError, VidxError

METADATA_KEYS = {
    "model_name", "pretrained", "embed_dim", "normalized", "device", "frame_path",
    "frame_quality", "inference_time_ms", "created_at", "error",
}


def _image(path: Path, seed: int | None = None, color=(128, 128, 128), size=(160, 90)) -> Path:
    if seed is None:
        array = np.full((size[1], size[0], 3), color, dtype=np.uint8)
    else:
        array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def frames(tmp_path) -> list[FrameToEmbed]:
    paths = [_image(tmp_path / f"scene_{i:04d}.jpg", seed=i) for i in range(5)]
    return [FrameToEmbed(p, {"quality_score": 0.1 * i, "sharpness": 1.0}) for i, p in enumerate(paths)]


def test_embeddings_are_512_normalized_with_contract_metadata(clip_env, frames):
    results = embed_frames(frames, clip_env.settings())
    assert len(results) == len(frames)
    for frame, result in zip(frames, results, strict=True):
        assert len(result.vector) == 512
        assert np.linalg.norm(result.vector) == pytest.approx(1.0, abs=1e-5)
        meta = result.metadata
        assert set(meta) == METADATA_KEYS
        assert meta["error"] is None
        assert meta["model_name"] == clip_env.model_name
        assert meta["pretrained"] == str(clip_env.checkpoint)
        assert meta["embed_dim"] == 512 and meta["normalized"] is True and meta["device"] == "cpu"
        assert meta["frame_path"] == str(frame.path)
        assert meta["frame_quality"] == frame.quality["quality_score"]
        assert meta["inference_time_ms"] >= 0
        assert datetime.fromisoformat(meta["created_at"]).utcoffset() == UTC.utcoffset(None)


def test_label_is_recorded_as_frame_path(clip_env, frames):
    result = embed_frames([FrameToEmbed(frames[0].path, {}, label="scene_0000.jpg")], clip_env.settings())[0]
    assert result.metadata["frame_path"] == "scene_0000.jpg"
    assert result.metadata["frame_quality"] is None


def test_normalize_false_keeps_raw_vectors(clip_env, frames):
    raw = embed_frames(frames[:2], clip_env.settings(clip_normalize=False))
    assert all(r.metadata["normalized"] is False for r in raw)
    assert abs(np.linalg.norm(raw[0].vector) - 1.0) > 1e-3


def test_identical_frames_give_identical_embeddings(clip_env, frames, tmp_path):
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(frames[0].path.read_bytes())
    first, again, other = embed_frames([frames[0], FrameToEmbed(copy, {}), frames[1]], clip_env.settings())
    assert first.vector == again.vector
    assert first.vector != other.vector


def test_batched_and_one_at_a_time_agree(clip_env, frames):
    batched = embed_frames(frames, clip_env.settings(), batch_size=16)
    single = embed_frames(frames, clip_env.settings(), batch_size=1)
    for b, s in zip(batched, single, strict=True):
        np.testing.assert_allclose(b.vector, s.vector, atol=1e-5)


def test_image_read_error_nulls_only_that_scene(clip_env, frames, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.jpg"
    results = embed_frames([frames[0], FrameToEmbed(corrupt, {}), FrameToEmbed(missing, {}), frames[1]],
                           clip_env.settings())
    assert results[0].vector is not None and results[3].vector is not None
    for bad in results[1:3]:
        assert bad.vector is None
        assert bad.metadata["error"].startswith("Image read error: ")
        assert bad.metadata["inference_time_ms"] is None
        assert set(bad.metadata) == METADATA_KEYS


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"CLIP_MODEL_NAME": "no-such-model"}, "unknown model name"),
        ({"CLIP_CHECKPOINT": "BAD"}, "Model load failed: "),
        ({"CLIP_CHECKPOINT": None, "CLIP_PRETRAINED": "no-such-tag"}, "no-such-tag"),
        ({"CLIP_DEVICE": "cuda"}, "CUDA"),
    ],
    ids=["unknown-model", "corrupt-checkpoint", "unknown-pretrained-tag", "cuda-missing"],
)
def test_load_failure_nulls_every_scene_with_reason(clip_env, frames, tmp_path, monkeypatch, env, reason):
    import torch

    if env.get("CLIP_DEVICE") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        elif value == "BAD":
            bad = tmp_path / "bad.pt"
            bad.write_bytes(b"this is not a torch checkpoint")
            monkeypatch.setenv(name, str(bad))
        else:
            monkeypatch.setenv(name, value)
    results = embed_frames(frames, clip_env.settings())
    assert len(results) == len(frames)
    for result in results:
        assert result.vector is None
        assert result.metadata["error"].startswith("Model load failed: ")
        assert reason in result.metadata["error"]
        assert "\n" not in result.metadata["error"]
        assert result.metadata["inference_time_ms"] is None
        assert set(result.metadata) == METADATA_KEYS
    with pytest.raises(ClipUnavailableError, match="Model load failed"):
        encode_text(["a cat"], clip_env.settings())
    with pytest.raises(ClipUnavailableError, match="Model load failed"):
        encode_image(frames[0].path, clip_env.settings())


def test_failed_load_is_not_retried_for_every_video(clip_env, frames, monkeypatch):
    monkeypatch.setenv("CLIP_MODEL_NAME", "no-such-model")
    calls = []
    real = singleton.load_clip
    monkeypatch.setattr(singleton, "load_clip", lambda s, **kw: calls.append(1) or real(s, **kw))
    embed_frames(frames[:1], clip_env.settings())
    embed_frames(frames[:1], clip_env.settings())
    assert len(calls) == 1
    monkeypatch.setattr(singleton, "LOAD_RETRY_AFTER_S", 0.0)
    embed_frames(frames[:1], clip_env.settings())
    assert len(calls) == 2


def test_clip_disabled_never_loads_the_model(clip_env, frames, monkeypatch):
    monkeypatch.setenv("CLIP_ENABLED", "false")
    monkeypatch.setattr(singleton, "load_clip", lambda s, **kw: pytest.fail("model loaded although CLIP_ENABLED=false"))
    results = embed_frames(frames, clip_env.settings())
    assert [r.vector for r in results] == [None] * len(frames)
    assert {r.metadata["error"] for r in results} == {"CLIP disabled (CLIP_ENABLED=false)"}
    assert all(r.metadata["inference_time_ms"] is None for r in results)
    with pytest.raises(ClipUnavailableError, match="CLIP_ENABLED=false"):
        encode_text(["a cat"], clip_env.settings())
    assert singleton.loaded_model() is None


def test_other_embedding_width_is_refused(clip_env, frames, tiny_clip_checkpoint_256, monkeypatch):
    name, checkpoint = tiny_clip_checkpoint_256
    monkeypatch.setenv("CLIP_MODEL_NAME", name)
    monkeypatch.setenv("CLIP_CHECKPOINT", str(checkpoint))
    results = embed_frames(frames, clip_env.settings())
    for result in results:
        assert result.vector is None
        assert "256-d" in result.metadata["error"] and "vector(512)" in result.metadata["error"]
    with pytest.raises(ClipUnavailableError, match="vector\\(512\\)"):
        encode_text(["a cat"], clip_env.settings())


def test_encode_text_is_normalized_and_deterministic(clip_env):
    vectors = encode_text(["a dog on a beach", "a red car", "a dog on a beach"], clip_env.settings())
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])
    assert encode_text([], clip_env.settings()).shape == (0, 512)


def test_encode_image_matches_the_stored_scene_embedding(clip_env, frames, tmp_path):
    stored = embed_frames(frames[:1], clip_env.settings())[0].vector
    query = encode_image(frames[0].path, clip_env.settings())
    assert query.shape == (512,)
    np.testing.assert_allclose(query, stored, atol=1e-6)
    with pytest.raises(BadInputError, match="not found"):
        encode_image(tmp_path / "missing.png", clip_env.settings())
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"junk")
    with pytest.raises(BadInputError, match="Cannot read image"):
        encode_image(junk, clip_env.settings())


def test_errors_are_vidx_errors():
    assert issubclass(ClipUnavailableError, VidxError)


def test_one_model_per_process_loaded_once_under_threads(clip_env, monkeypatch):
    calls = []
    real = singleton.load_clip
    monkeypatch.setattr(singleton, "load_clip", lambda s, **kw: calls.append(1) or real(s, **kw))
    settings = clip_env.settings()
    models = []
    threads = [threading.Thread(target=lambda: models.append(get_model(settings))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(m) for m in models}) == 1
    assert get_model(settings) is models[0]


def test_forked_child_does_not_inherit_the_model(clip_env):
    get_model(clip_env.settings())
    assert singleton.loaded_model() is not None
    pid = os.fork()
    if pid == 0:  # child: must load its own model, never use the parent's
        os._exit(0 if singleton.loaded_model() is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_debug_log_reports_load_time_scene_time_and_norm(clip_env, frames):
    from structlog.testing import capture_logs

    reset_model()
    with capture_logs() as logs:
        embed_frames(frames[:2], clip_env.settings(clip_debug_log=True))
    loaded = [e for e in logs if e["event"] == "clip_model_loaded"]
    scenes = [e for e in logs if e["event"] == "clip_scene_embedded"]
    assert len(loaded) == 1 and "load_ms" in loaded[0]
    assert len(scenes) == 2 and all("inference_ms" in e and e["norm"] > 0 for e in scenes)


def test_size_cap_matches_torchvision_resize_so_the_model_input_is_unchanged(clip_env, tmp_path):
    model = get_model(clip_env.settings())
    big = _image(tmp_path / "big.png", seed=7, size=(1280, 720))
    capped = load_image(big, model.input_size)
    assert min(capped.size) == model.input_size
    with Image.open(big) as full:
        uncapped = model.transform(full.convert("RGB"))
    assert np.array_equal(model.transform(capped).numpy(), uncapped.numpy())
    assert capped_size(100, 50, 224) is None
    assert capped_size(1920, 1080, 224) == (398, 224)
    assert capped_size(1080, 1920, 224) == (224, 398)


def test_a_process_that_only_embeds_frames_never_holds_the_text_tower(clip_env, frames, monkeypatch):
    settings = clip_env.settings()
    image_only = embed_frames(frames[:2], settings)
    model = singleton.loaded_model()
    assert model is not None and not model.has_text
    assert not hasattr(model.model, "token_embedding")
    encode_text(["a cat"], settings)  # reloads once, with the text tower
    full = singleton.loaded_model()
    assert full is not model and full.has_text
    assert sum(p.numel() for p in model.model.parameters()) < sum(p.numel() for p in full.model.parameters())
    again = embed_frames(frames[:2], settings)
    assert singleton.loaded_model() is full  # no reload: the full model embeds frames too
    for a, b in zip(image_only, again, strict=True):
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-6)


def test_a_huge_jpeg_is_capped_while_decoding(clip_env, tmp_path):
    big = tmp_path / "huge.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 160, 3), dtype=np.uint8)).resize(
        (4000, 2250)).save(big, quality=80)
    image = load_image(big, 64)
    assert min(image.size) == 64 and image.size == (113, 64)
    result = embed_frames([FrameToEmbed(big, {})], clip_env.settings(clip_max_image_size=64))[0]
    assert result.vector is not None


def test_an_unexpected_error_still_gives_one_result_per_frame(clip_env, frames, monkeypatch):
    import pipeline.clip.embed as embed

    monkeypatch.setattr(embed, "to_tensor", lambda *a, **k: (_ for _ in ()).throw(KeyError("boom")))
    results = embed_frames(frames, clip_env.settings())
    assert len(results) == len(frames)
    assert all(r.vector is None and r.metadata["error"].startswith("Image read error: KeyError") for r in results)


def test_make_checkpoint_script_writes_loadable_random_weights(clip_env, frames, tmp_path, monkeypatch):
    import importlib.util
    import json

    from tests.fixtures.clip import tiny_model_config

    spec = importlib.util.spec_from_file_location("make_checkpoint", Path(__file__).parent.parent / "scripts" /
                                                  "make_checkpoint.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = tmp_path / "any-name.json"
    config.write_text(json.dumps(tiny_model_config(512)))
    out = tmp_path / "weights" / "vidx-script-tiny.safetensors"
    assert script.main(["vidx-script-tiny", str(out), "--config", str(config), "--half"]) == 0
    assert (out.parent / "vidx-script-tiny.json").is_file()
    monkeypatch.setenv("CLIP_MODEL_NAME", "vidx-script-tiny")
    monkeypatch.setenv("CLIP_CHECKPOINT", str(out))
    (result,) = embed_frames(frames[:1], clip_env.settings())
    assert result.vector is not None and result.metadata["pretrained"] == str(out)


def test_clip_disabled_never_imports_torch(tmp_path):
    """A CLIP_ENABLED=false process (e.g. a sidecar-only indexer) pays nothing for torch."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path\n"
        "from pipeline.clip import FrameToEmbed, embed_frames\n"
        "from pipeline.core.config import load_settings\n"
        "r = embed_frames([FrameToEmbed(Path('f.jpg'), {'quality_score': 0.4})], load_settings({'CLIP_ENABLED': 'false'}))\n"
        "assert r[0].vector is None and r[0].metadata['error'].startswith('CLIP disabled')\n"
        "assert r[0].metadata['frame_quality'] == 0.4\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
