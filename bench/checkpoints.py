"""The benches' random-weights CLIP checkpoint: made once, cached in bench/.cache/.

Made in a separate process (scripts/make_checkpoint.py), so building it never
counts in the memory a bench measures. Plumbing only: its similarities are noise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"


def random_checkpoint(model_name: str) -> Path:
    """``bench/.cache/<model>-random-seed0.pt``, made on first use."""
    path = CACHE / f"{model_name}-random-seed0.pt"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_checkpoint.py"), model_name, str(path)],
                       check=True)
    return path
