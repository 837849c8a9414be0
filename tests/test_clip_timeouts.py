"""Per-scene timeouts, hung forward passes and CUDA OOM, with an injected slow/failing forward.

The fakes wrap the real tiny model's forward: a frame that is pure red
makes the forward pass slow (or hang); every other frame is embedded normally.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pipeline.clip.runner as runner
import pipeline.clip.singleton as singleton
from pipeline.clip import FrameToEmbed, embed_frames, get_model
from pipeline.clip.loader import load_clip


def _solid(path: Path, color) -> FrameToEmbed:
    Image.fromarray(np.full((90, 160, 3), color, dtype=np.uint8)).save(path)
    return FrameToEmbed(path, {"quality_score": 0.5})


@pytest.fixture
def scenes(tmp_path) -> dict[str, FrameToEmbed]:
    return {
        "gray": _solid(tmp_path / "gray.png", (128, 128, 128)),
        "red": _solid(tmp_path / "red.png", (255, 0, 0)),
        "blue": _solid(tmp_path / "blue.png", (0, 0, 255)),
    }


def _has_red(batch: torch.Tensor) -> bool:
    red_minus_green = batch[:, 0].float().mean(dim=(1, 2)) - batch[:, 1].float().mean(dim=(1, 2))
    return bool((red_minus_green > 2.0).any())


def _slow_on_red(model, delay_s: float = 0.0, gate: threading.Event | None = None):
    real = model.image_encoder

    def encode_image(batch):
        if _has_red(batch):
            if gate is not None:
                gate.wait(30)
            else:
                time.sleep(delay_s)
        return real(batch)

    model.image_encoder = encode_image


def test_a_slow_scene_times_out_alone_and_the_rest_of_the_batch_is_embedded(clip_env, scenes, monkeypatch):
    monkeypatch.setattr(runner, "HANG_FACTOR", 100.0)  # slow, not hung
    settings = clip_env.settings(clip_timeout_s=0.25)
    order = [scenes["gray"], scenes["red"], scenes["blue"]]
    reference = embed_frames(order, settings)
    assert all(r.vector is not None for r in reference)

    _slow_on_red(get_model(settings, text=False), delay_s=0.8)  # > the batch's 3 x 0.25 s and the scene's own 0.25 s
    gray, red, blue = embed_frames(order, settings)
    assert red.vector is None
    assert red.metadata["error"] == "Timeout after 0.25s"
    assert red.metadata["inference_time_ms"] is None
    np.testing.assert_allclose(gray.vector, reference[0].vector, atol=1e-6)
    np.testing.assert_allclose(blue.vector, reference[2].vector, atol=1e-6)
    assert gray.metadata["error"] is None and blue.metadata["error"] is None


def test_a_hung_forward_pass_is_abandoned_and_the_model_reloaded(clip_env, scenes, monkeypatch):
    monkeypatch.setattr(runner, "HANG_FACTOR", 2.0)
    settings = clip_env.settings(clip_timeout_s=0.2)
    hung_model = get_model(settings, text=False)
    gate = threading.Event()
    _slow_on_red(hung_model, gate=gate)
    try:
        (red,) = embed_frames([scenes["red"]], settings)
        assert red.vector is None and red.metadata["error"] == "Timeout after 0.2s"
        assert hung_model.runner.hung
        # the next video gets a fresh model and is embedded
        (gray,) = embed_frames([scenes["gray"]], settings)
        assert gray.vector is not None
        assert get_model(settings) is not hung_model
    finally:
        gate.set()


def test_repeated_hangs_make_the_model_unusable_until_restart(clip_env, scenes, monkeypatch):
    monkeypatch.setattr(runner, "HANG_FACTOR", 2.0)
    monkeypatch.setattr(singleton, "MAX_HUNG_MODELS", 1)
    settings = clip_env.settings(clip_timeout_s=0.2)
    gate = threading.Event()
    _slow_on_red(get_model(settings, text=False), gate=gate)
    try:
        embed_frames([scenes["red"]], settings)
        (gray,) = embed_frames([scenes["gray"]], settings)
        assert gray.vector is None
        assert gray.metadata["error"].startswith("Model unusable: 1 forward passes hung")
    finally:
        gate.set()


def test_cuda_out_of_memory_is_retried_once_on_cpu(clip_env, scenes, monkeypatch):
    settings = clip_env.settings()
    expected = embed_frames([scenes["gray"]], settings)[0].vector
    model = get_model(settings, text=False)
    twins = []

    def oom(batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    # pretend the model lives on CUDA and runs out of memory there
    monkeypatch.setattr(model, "forward_images", oom)
    monkeypatch.setattr(model, "device", "cuda")
    monkeypatch.setattr(model, "make_cpu_twin", lambda: twins.append(1) or load_clip(settings, device="cpu", text=False))
    (first,) = embed_frames([scenes["gray"]], settings)
    (second,) = embed_frames([scenes["gray"]], settings)
    for result in (first, second):
        assert result.metadata["error"] is None
        assert result.metadata["device"] == "cpu"
        np.testing.assert_allclose(result.vector, expected, atol=1e-6)
    assert twins == [1]  # the CPU copy is loaded once and kept


def test_other_inference_errors_degrade_the_batch_not_the_call(clip_env, scenes, monkeypatch):
    settings = clip_env.settings()
    model = get_model(settings, text=False)

    def broken(batch):
        raise RuntimeError("DefaultCPUAllocator: not enough memory\nsecond line")

    monkeypatch.setattr(model, "forward_images", broken)
    results = embed_frames(list(scenes.values()), settings)
    for result in results:
        assert result.vector is None
        assert result.metadata["error"] == "Inference failed: RuntimeError: DefaultCPUAllocator: not enough memory"
