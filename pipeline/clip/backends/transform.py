"""open_clip's eval transform rebuilt from its preprocess config, without importing open_clip or torchvision.

Why: a worker on an exported backend needs only the transform from
open_clip, yet importing open_clip (and with it torchvision and timm) adds
~0.24 GB to every worker's RSS. The export records the model's preprocess
config (``preprocess.json``); this replays the same steps with the same
arithmetic as torchvision on PIL images (resize of the shortest side, centre
crop, RGB, ToTensor, Normalize), so the model input is bit-for-bit the same
(tested against open_clip's own transform).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST}


class UnsupportedPreprocess(ValueError):
    """A preprocess config this replay does not cover (then open_clip builds the transform)."""


def square_size(cfg: Mapping[str, Any]) -> int:
    """The model's (square) input side."""
    size = cfg.get("size", 224)
    if isinstance(size, int):
        return size
    if len(size) == 2 and size[0] == size[1]:
        return int(size[0])
    raise UnsupportedPreprocess(f"non-square input {size}")


def eval_transform(cfg: Mapping[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised C x H x W float32 tensor, exactly as open_clip's eval transform."""
    side = square_size(cfg)
    if cfg.get("resize_mode", "shortest") != "shortest":
        raise UnsupportedPreprocess(f"resize_mode {cfg.get('resize_mode')!r}")
    resample = _RESAMPLE.get(str(cfg.get("interpolation", "bicubic")))
    if resample is None:
        raise UnsupportedPreprocess(f"interpolation {cfg.get('interpolation')!r}")
    mean = torch.tensor(cfg["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(cfg["std"], dtype=torch.float32)[:, None, None]
    mode = str(cfg.get("mode", "RGB"))

    def transform(image: Image.Image) -> torch.Tensor:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        if short != side:  # torchvision Resize(int): shorter side to `side`, longer scaled and truncated
            new_long = int(side * long / short)
            image = image.resize((side, new_long) if width <= height else (new_long, side), resample)
        width, height = image.size
        if width < side or height < side:
            raise UnsupportedPreprocess("image smaller than the crop after resizing")
        top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
        image = image.crop((left, top, left + side, top + side))
        if image.mode != mode:
            image = image.convert(mode)
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return pixels.to(dtype=torch.float32).div(255).sub_(mean).div_(std)

    return transform
