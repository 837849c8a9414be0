"""CLIP embedding of each scene's best frame (open_clip), one model per process.

See docs/clip.md. The model is loaded lazily on first use, never at import.
"""

from pipeline.clip.embed import BATCH_SIZE, FrameToEmbed, embed_frames
from pipeline.clip.errors import ClipUnavailableError
from pipeline.clip.model import DB_EMBED_DIM, ClipModel
from pipeline.clip.search import encode_image, encode_text
from pipeline.clip.singleton import get_model, reset_model

__all__ = [
    "BATCH_SIZE",
    "DB_EMBED_DIM",
    "ClipModel",
    "ClipUnavailableError",
    "FrameToEmbed",
    "embed_frames",
    "encode_image",
    "encode_text",
    "get_model",
    "reset_model",
]
