"""The worker's image-tower load (meta build + memory-mapped weights) equals open_clip's own full load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.clip.lean_load import LeanLoadUnsupported, load_image_tower


def _reference_tower(model_name: str, checkpoint: Path) -> torch.nn.Module:
    import open_clip

    model = open_clip.create_model(model_name, pretrained=str(checkpoint))
    return model.eval()


def _inputs() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _save(checkpoint: Path, out: Path, **kwargs) -> Path:
    state = torch.load(checkpoint, weights_only=True)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    else:
        torch.save(state, out, **kwargs)
    (out.parent / checkpoint.with_suffix(".json").name).write_bytes(checkpoint.with_suffix(".json").read_bytes())
    return out


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_image_tower_matches_open_clips_full_load(tiny_clip_checkpoint, tmp_path, suffix):
    model_name, checkpoint = tiny_clip_checkpoint
    path = checkpoint if suffix == ".pt" else _save(checkpoint, tmp_path / f"{model_name}.safetensors")
    tower, transform, cfg = load_image_tower(path, model_name, "cpu", "fp32", {})
    reference = _reference_tower(model_name, checkpoint)
    with torch.inference_mode():
        assert torch.equal(tower(_inputs()), reference.encode_image(_inputs()))
    assert cfg["size"] in (32, (32, 32)) and callable(transform)
    assert not any(t.is_meta for t in tower.parameters())


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path.resolve()):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def test_weights_are_mapped_from_the_file_not_copied(tiny_clip_checkpoint):
    """Every weight of the tower lives in the checkpoint file's mapping: no second copy exists."""
    model_name, checkpoint = tiny_clip_checkpoint
    tower, _, _ = load_image_tower(checkpoint, model_name, "cpu", "fp32", {})
    ranges = _file_mappings(checkpoint)
    assert ranges, "the checkpoint is not memory-mapped"
    for name, param in tower.named_parameters():
        assert any(lo <= param.data_ptr() < hi for lo, hi in ranges), f"{name} was copied"


def test_legacy_torch_file_is_left_to_open_clip(tiny_clip_checkpoint, tmp_path):
    model_name, checkpoint = tiny_clip_checkpoint
    legacy = _save(checkpoint, tmp_path / f"{model_name}.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(LeanLoadUnsupported):
        load_image_tower(legacy, model_name, "cpu", "fp32", {})


def test_worker_embeddings_equal_the_full_models(clip_env, tmp_path, monkeypatch):
    """Through get_model: the text-free worker load and a full load embed a frame identically."""
    import numpy as np
    from PIL import Image

    from pipeline.clip import FrameToEmbed, embed_frames, encode_text, reset_model

    image = tmp_path / "frame.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(image)
    settings = clip_env.settings(clip_backend="torch")
    (worker,) = embed_frames([FrameToEmbed(image, {})], settings)  # image tower only: the lean path
    reset_model()
    encode_text(["load the whole model"], settings)  # a full model in this process now
    (full,) = embed_frames([FrameToEmbed(image, {})], settings)
    assert worker.vector == full.vector
