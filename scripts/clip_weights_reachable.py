"""Exit 0 when CLIP_PRETRAINED weights can be had (cached or the hub answers), 1 otherwise.

The demo asks this first, so an offline machine does not spend a minute in
download retries before falling back to a local checkpoint.
"""

from __future__ import annotations

import socket
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from pipeline.config import load_settings

    settings = load_settings()
    if settings.clip_checkpoint is not None:
        return 0
    cache = settings.clip_cache_dir
    if cache.is_dir() and any(cache.rglob("*.safetensors")) or cache.is_dir() and any(cache.rglob("*.bin")):
        return 0
    from huggingface_hub import constants

    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
