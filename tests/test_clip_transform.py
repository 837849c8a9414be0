"""The exported backends' transform (no open_clip import) gives open_clip's model input bit for bit."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from pipeline.clip.backends.transform import eval_transform

SIZES = [(224, 224), (640, 360), (360, 640), (225, 301), (1000, 17), (17, 1000), (100, 100), (223, 224), (1920, 1080)]


@pytest.mark.parametrize("model_name,pretrained", [("ViT-B-32", "openai"), ("ViT-B-16", "laion2b_s34b_b88k")])
def test_same_input_as_open_clips_transform(model_name, pretrained):
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    kwargs = {f"image_{k}": tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    with torch.device("meta"):
        model, _, reference = open_clip.create_model_and_transforms(model_name, pretrained=None, device="meta", **kwargs)
    ours = eval_transform(open_clip.get_model_preprocess_cfg(model))
    rng = np.random.default_rng(0)
    for width, height in SIZES:
        for mode in ("RGB", "L", "RGBA"):
            channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
            array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
            image = Image.fromarray(array[..., 0] if channels == 1 else array, mode)
            assert torch.equal(ours(image), reference(image)), (width, height, mode)
