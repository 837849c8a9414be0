"""Reading a stored best frame: the one place that decodes what ``frame_path`` names.

Where the bytes live (a local file or an ``s3://`` object) is
``pipeline.storage.read_frame``'s business (issue 15).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def open_frame(path: str | Path) -> Image.Image:
    """The frame as an RGB image, fully read; ``OSError`` when it cannot be read or decoded."""
    from pipeline.storage import read_frame

    data = read_frame(path)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")
