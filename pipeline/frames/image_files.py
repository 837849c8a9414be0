"""Reading a stored best frame: the one place that decodes what ``frame_path`` names.

Where the bytes live (a local file or an ``s3://`` object) is the storage
backend's business (``VideoStorage.read_frame``).
"""

from __future__ import annotations

import io

from PIL import Image

from pipeline.storage import VideoStorage


def open_frame(frame_path: str, storage: VideoStorage) -> Image.Image:
    """The frame as an RGB image, fully read; ``OSError`` when it cannot be read or decoded."""
    data = storage.read_frame(frame_path)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")
