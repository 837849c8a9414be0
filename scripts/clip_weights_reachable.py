"""Exit 0 when the configured CLIP weights can be had (a checkpoint, cached, or the hub answers), 1 otherwise.

The demo asks this first, so an offline machine falls back to a local
checkpoint at once. The rule itself lives in pipeline/clip/weights_source.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from pipeline.clip.weights_source import weights_available
    from pipeline.core.config import load_settings

    return 0 if weights_available(load_settings()) else 1


if __name__ == "__main__":
    sys.exit(main())
