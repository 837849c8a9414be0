#!/usr/bin/env python3
"""What zero-shot labels and descriptions add to a worker: time and memory.

    .venv/bin/python bench/labels.py                        # ViT-B-32, CPU, random weights
    .venv/bin/python bench/labels.py --checkpoint /models/vit-b-32.pt --scenes 200

Weights: random (scripts/make_checkpoint.py, cached in bench/.cache/) unless
--checkpoint is given; random weights time exactly like trained ones. Steps,
in one process that already holds the image-only model (as a worker does):
  1. the vocabulary's text embeddings computed cold (a temporary whole model is
     loaded, the labels x templates and the description phrases encoded, the
     model dropped): once per model per machine, thanks to the disk cache;
  2. the same read back from the disk cache (what every later process pays);
  3. labels + description for --scenes embedded scenes (per video, every video).
RSS is reported after each step, with the peak (ru_maxrss) of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checkpoints import random_checkpoint  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scenes", type=int, default=100)
    args = parser.parse_args()

    weights = args.checkpoint or random_checkpoint(args.model)
    cache_dir = tempfile.mkdtemp(prefix="vidx-bench-labels-")
    os.environ.update(CLIP_MODEL_NAME=args.model, CLIP_CHECKPOINT=str(weights), CLIP_PRETRAINED="openai",
                      CLIP_DEVICE=args.device, CLIP_CACHE_DIR=cache_dir, CLIP_TIMEOUT_S="60",
                      VIDX_LOG_LEVEL="warning")
    import numpy as np

    from pipeline.clip import get_model
    from pipeline.clip import labels as clip_labels
    from pipeline.clip.understand import understand_vectors
    from pipeline.clip.vocabulary import LABEL_TEMPLATES
    from pipeline.core.config import load_settings

    settings = load_settings()
    figures: dict[str, float | int | str] = {"model": args.model, "device": args.device}
    get_model(settings, text=False)  # the worker's own, image-only model
    figures["rss_with_image_model_mb"] = round(rss_mb())

    start = time.perf_counter()
    bank = clip_labels.text_bank(settings)
    figures["vocabulary_cold_s"] = round(time.perf_counter() - start, 2)
    figures["texts_encoded"] = len(bank.labels) * len(LABEL_TEMPLATES) + sum(len(p) for _, p, _ in bank.slots)
    figures["rss_after_cold_mb"] = round(rss_mb())
    figures["peak_rss_mb"] = round(peak_mb())
    cached = next((Path(cache_dir) / clip_labels.CACHE_SUBDIR).glob("*.npz"))
    figures["disk_cache_kb"] = round(cached.stat().st_size / 1024)

    clip_labels.forget_text_banks()
    start = time.perf_counter()
    clip_labels.text_bank(settings)
    figures["vocabulary_from_disk_ms"] = round((time.perf_counter() - start) * 1000, 1)

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.scenes, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    understand_vectors([list(v) for v in vectors], settings)
    elapsed = time.perf_counter() - start
    figures["scenes"] = args.scenes
    figures["labels_per_scene_ms"] = round(elapsed * 1000 / args.scenes, 3)
    figures["rss_end_mb"] = round(rss_mb())
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
