"""CLIP_BACKEND: the tiny model exported to ONNX and run by ONNX Runtime / OpenVINO embeds like torch.

Real export (a child process, as in production), real runtimes, real frames' files; no mocks of the
model. One export per backend per test session (cached beside the session's tiny checkpoint).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.clip import FrameToEmbed, embed_frames, get_model, reset_model
from pipeline.clip.backends import choose_backend, installed
from pipeline.clip.backends.export_cache import cached_export, export_key, export_roots
from pipeline.clip.backends.runtime_tower import RuntimeImageTower

MIN_COSINE = 0.9999


@pytest.fixture
def frames(tmp_path) -> list[FrameToEmbed]:
    paths = []
    for i in range(4):
        path = tmp_path / f"scene_{i:04d}.jpg"
        small = np.random.default_rng(i).integers(0, 256, (9, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((160, 90), Image.Resampling.BICUBIC).save(path)
        paths.append(path)
    return [FrameToEmbed(p, {}) for p in paths]


def _vectors(settings, frames) -> np.ndarray:
    reset_model()
    results = embed_frames(frames, settings)
    assert all(r.vector is not None for r in results), [r.metadata["error"] for r in results]
    return np.array([r.vector for r in results])


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_runtime_backend_embeds_like_torch(clip_env, frames, backend):
    if not installed(backend):
        pytest.skip(f"{backend} runtime not installed")
    expected = _vectors(clip_env.settings(clip_backend="torch"), frames)
    got = _vectors(clip_env.settings(clip_backend=backend), frames)
    assert isinstance(get_model(clip_env.settings(clip_backend=backend), text=False).model, RuntimeImageTower)
    cosines = (expected * got).sum(axis=1)  # both L2-normalised
    assert cosines.min() >= MIN_COSINE, cosines


def test_auto_is_onnx_on_cpu_and_torch_on_cuda():
    assert choose_backend("auto", "cuda") == "torch"
    assert choose_backend("onnx", "cuda") == "torch"
    assert choose_backend("torch", "cpu") == "torch"
    assert choose_backend("auto", "cpu") == ("onnx" if installed("onnx") else "torch")


def test_export_is_reused_and_keyed_by_the_weights(clip_env, tmp_path):
    checkpoint = tmp_path / "weights" / clip_env.checkpoint.name
    checkpoint.parent.mkdir()
    shutil.copy(clip_env.checkpoint, checkpoint)
    shutil.copy(clip_env.checkpoint.with_suffix(".json"), checkpoint.with_suffix(".json"))
    settings = clip_env.settings(clip_checkpoint=checkpoint, clip_backend="onnx")
    key = export_key(settings, "runtime-1")
    assert export_key(settings, "runtime-1") == key
    assert export_key(settings, "runtime-2") != key  # a runtime upgrade means a new export
    assert export_key(settings.with_overrides(clip_pretrained="openai"), "runtime-1") != key
    with checkpoint.open("r+b") as f:  # the same file, other weights
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    assert export_key(settings, "runtime-1") != key


def test_concurrent_exports_publish_one_complete_directory(clip_env, tmp_path):
    settings = clip_env.settings(clip_cache_dir=tmp_path / "cache", clip_checkpoint=None)
    made = []

    def make(directory: Path) -> None:
        (directory / "part").write_text("half")
        time.sleep(0.2)  # both writers are mid-export at once
        (directory / "image_tower.onnx").write_text(str(threading.get_ident()))
        made.append(directory)

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cached_export(settings, "k1", make))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 2 and results[0] == results[1]
    root = export_roots(settings)[-1]
    assert sorted(p.name for p in root.iterdir()) == ["k1"]  # no temporary leftovers
    assert (root / "k1" / "image_tower.onnx").is_file()


def test_unwritable_weights_directory_falls_back_to_the_cache_dir(clip_env, frames, tmp_path):
    checkpoint = tmp_path / "ro" / clip_env.checkpoint.name
    checkpoint.parent.mkdir()
    shutil.copy(clip_env.checkpoint, checkpoint)
    shutil.copy(clip_env.checkpoint.with_suffix(".json"), checkpoint.with_suffix(".json"))
    (checkpoint.parent / ".vidx-exports").write_text("not a directory")  # what a read-only volume amounts to
    settings = clip_env.settings(clip_checkpoint=checkpoint, clip_cache_dir=tmp_path / "cache", clip_backend="onnx")
    _vectors(settings, frames)
    tower = get_model(settings, text=False).model
    assert isinstance(tower, RuntimeImageTower)
    assert tower.path.is_relative_to(tmp_path / "cache" / "exports")


def test_a_failed_export_falls_back_to_torch(clip_env, frames, monkeypatch):
    import pipeline.clip.backends.runtime_tower as runtime_tower

    def refuse(*args, **kwargs):
        raise RuntimeError("ONNX export failed (3): export refused")

    monkeypatch.setattr(runtime_tower, "cached_export", refuse)
    settings = clip_env.settings(clip_backend="onnx")
    expected = _vectors(clip_env.settings(clip_backend="torch"), frames)
    got = _vectors(settings, frames)
    assert not isinstance(get_model(settings, text=False).model, RuntimeImageTower)
    assert np.array_equal(expected, got)


def test_a_worker_on_the_export_never_imports_open_clip_or_torchvision(clip_env, frames, tmp_path):
    """~0.24 GB of RSS: only the export child (once) imports them."""
    import os
    import subprocess
    import sys

    _vectors(clip_env.settings(clip_backend="onnx"), frames)  # the export exists now
    code = (
        "import sys; from pathlib import Path\n"
        "from pipeline.clip import FrameToEmbed, embed_frames\n"
        "from pipeline.core.config import load_settings\n"
        f"(r,) = embed_frames([FrameToEmbed(Path({str(frames[0].path)!r}), {{}})], load_settings())\n"
        "assert r.vector is not None, r.metadata['error']\n"
        "assert 'open_clip' not in sys.modules and 'torchvision' not in sys.modules, 'imported'\n"
    )
    env = {**os.environ, "CLIP_BACKEND": "onnx", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_check_stage_runs_without_torch_and_refuses_an_export_unlike_torch(clip_env, tmp_path):
    """The export and its check are two children: the check imports no torch, and a result that does not
    reproduce torch's features (here: torch's features swapped for others) is refused, exit 3, never marked done."""
    import os
    import subprocess
    import sys

    import pipeline.clip.backends.onnx_export as onnx_export

    settings = clip_env.settings()
    out = tmp_path / "export"
    out.mkdir()
    base = [sys.executable, "-m", "pipeline.clip.backends.onnx_export", "--model", settings.clip_model_name,
            "--pretrained", settings.clip_pretrained, "--checkpoint", str(settings.clip_checkpoint),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(onnx_export.__file__).resolve().parents[3])}
    done = subprocess.run([*base, "--stage", "export"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / onnx_export.ONNX_FILE).is_file() and not (out / "export.json").exists()

    features = out / onnx_export.CHECK_FEATURES_FILE
    genuine = np.load(features)
    np.save(features, np.random.default_rng(1).standard_normal(genuine.shape).astype(np.float32))
    refused = subprocess.run([*base, "--stage", "check"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 3 and "export refused" in refused.stderr
    assert not (out / "export.json").exists()

    np.save(features, genuine)
    probe = ("import runpy, sys; sys.argv = ['onnx_export'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('pipeline.clip.backends.onnx_export', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "assert 'torch' not in sys.modules, 'the check imported torch'\n"
             "sys.exit(code)\n")
    checked = subprocess.run([sys.executable, "-c", probe, *base[3:], "--stage", "check"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert json.loads((out / "export.json").read_text())["min_cosine_vs_torch"] >= MIN_COSINE
    assert not features.exists() and not (out / onnx_export.CHECK_PIXELS_FILE).exists()
