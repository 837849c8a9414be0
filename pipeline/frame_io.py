"""Reading a stored best frame: the one place that knows where frames live.

Today ``frame_path`` is a local file; when frames move to object storage only
this function changes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def open_frame(path: str | Path) -> Image.Image:
    """The frame as an RGB image, fully read (the file is closed); ``OSError`` when it cannot be read."""
    with Image.open(Path(path)) as image:
        image.load()
        return image.convert("RGB")
