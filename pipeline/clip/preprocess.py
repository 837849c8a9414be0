"""Frame file -> model input tensor, through the model's own transforms.

The only step added before the model's transforms is a size cap: the frame
is scaled down (aspect kept) so that its shorter side is at most
``max(CLIP_MAX_IMAGE_SIZE, model input size)``. The shorter side is what
open_clip's default (``shortest``) resize looks at, and the target size is
computed exactly as torchvision's ``Resize`` computes it, so with the default
cap (224 = ViT-B-32's input) the model's own resize finds the image already
at its size: the embedding is the same as without the cap, and a huge frame
costs no more than a small one after decoding. Large JPEGs are decoded at a
reduced scale (PIL ``draft``), so they do not even have to be decoded whole.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from pipeline.core.errors import first_line

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageReadError(Exception):
    """A frame file cannot be read as an image."""


def capped_size(width: int, height: int, max_short_side: int) -> tuple[int, int] | None:
    """The (w, h) to scale to so the shorter side is ``max_short_side``, or None if already small enough.

    Same arithmetic as torchvision's ``Resize(int)``, so the model's resize is a no-op afterwards.
    """
    short, long = (width, height) if width <= height else (height, width)
    if short <= max_short_side:
        return None
    new_short, new_long = max_short_side, int(max_short_side * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def load_image(path: Path, max_short_side: int, interpolation: str = "bicubic") -> Image.Image:
    """Read ``path`` as RGB, capped so its shorter side is at most ``max_short_side``."""
    try:
        with Image.open(path) as image:
            target = capped_size(image.width, image.height, max_short_side)
            if target is not None and image.format == "JPEG":
                image.draft("RGB", target)  # DCT-domain downscale, only by powers of 2, never below target
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(first_line(exc)) from exc
    target = capped_size(rgb.width, rgb.height, max_short_side)
    if target is not None:
        rgb = rgb.resize(target, _RESAMPLE.get(interpolation, Image.Resampling.BICUBIC))
    return rgb


def to_tensor(
    path: Path, transform: Callable[[Image.Image], torch.Tensor], max_short_side: int, interpolation: str = "bicubic"
) -> torch.Tensor:
    """The model input (C x H x W float) for one frame file."""
    return transform(load_image(path, max_short_side, interpolation))
