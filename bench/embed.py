#!/usr/bin/env python3
"""CLIP embedding throughput (one at a time vs batched) and the memory of a process holding the model.

    .venv/bin/python bench/embed.py                       # ViT-B-32, CPU, random weights
    .venv/bin/python bench/embed.py --device cuda --frames 256
    .venv/bin/python bench/embed.py --checkpoint /models/vit-b-32.pt

Weights: random (scripts/make_checkpoint.py, cached in bench/.cache/) unless
--checkpoint is given; random weights time exactly like trained ones. Frames:
distinct 640x360 JPEGs, like the pipeline's best frames. Both modes go through
``embed_frames`` (image read, preprocessing, inference thread, normalisation),
so images/s is what the indexer gets. Modes alternate over --rounds and the
best round of each counts. Memory: RSS of this process after embedding (it
holds the model), its peak (includes the transient copy of the weights while
loading), and the RSS of a process that only imports torch + open_clip +
pipeline.clip, measured in the same run, as the baseline.

Targets: batched >= 1.5x one-at-a-time; RSS after embedding <= 1.2 GB (CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "bench" / ".cache"

TARGET_SPEEDUP = 1.5
TARGET_RSS_GB = 1.2


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def baseline_import_rss() -> int:
    """RSS of a fresh process after importing what a CLIP worker imports, without a model."""
    code = "import torch, open_clip, pipeline.clip, psutil; print(psutil.Process().memory_info().rss)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def ensure_checkpoint(model_name: str) -> Path:
    """A random-weights checkpoint, made in a separate process so it does not count in this one's memory."""
    path = CACHE / f"{model_name}-random-seed0.pt"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_checkpoint.py"), model_name, str(path)],
                       check=True)
    return path


def make_frames(directory: Path, count: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # smooth random content (noise compresses unrealistically badly)
        small = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((640, 360), Image.Resampling.BICUBIC)
        path = directory / f"scene_{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def timed(frames, settings, batch_size: int) -> tuple[float, float]:
    """(images per wall-clock second, CPU seconds per image) of one ``embed_frames`` call."""
    from pipeline.clip import embed_frames

    start, cpu_start = time.perf_counter(), time.process_time()
    results = embed_frames(frames, settings, batch_size=batch_size)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    errors = {r.metadata["error"] for r in results if r.vector is None}
    if errors:
        raise SystemExit(f"embedding failed: {errors}")
    return len(frames) / elapsed, cpu / len(frames)


def main() -> int:
    parser = argparse.ArgumentParser(description="CLIP embedding bench")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--checkpoint", type=Path, help="weights file (default: random weights, cached)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CLIP_CPU_THREADS (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON too")
    args = parser.parse_args()

    checkpoint = args.checkpoint or ensure_checkpoint(args.model)
    baseline = baseline_import_rss()

    from pipeline.clip import FrameToEmbed, get_model
    from pipeline.config import load_settings

    env = {"CLIP_MODEL_NAME": args.model, "CLIP_CHECKPOINT": str(checkpoint), "CLIP_DEVICE": args.device,
           "CLIP_TIMEOUT_S": "120"}
    if args.threads:
        env["CLIP_CPU_THREADS"] = str(args.threads)
    settings = load_settings(env)
    frames = [FrameToEmbed(p, {}) for p in make_frames(CACHE / "embed_frames", args.frames)]

    start = time.perf_counter()
    model = get_model(settings, text=False)  # what a worker loads
    load_s = time.perf_counter() - start
    timed(frames[: args.batch_size], settings, args.batch_size)  # warm-up
    single, batched, single_cpu, batched_cpu = [], [], [], []
    for _ in range(args.rounds):
        rate, cpu = timed(frames, settings, 1)
        single.append(rate)
        single_cpu.append(cpu)
        rate, cpu = timed(frames, settings, args.batch_size)
        batched.append(rate)
        batched_cpu.append(cpu)
    rss, peak = rss_bytes(), peak_rss_bytes()

    import torch

    speedup = max(batched) / max(single)
    gb = 1e9
    report = {
        "model": args.model, "device": model.device, "dtype": str(model.dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "frames": args.frames,
        "batch_size": args.batch_size, "load_s": round(load_s, 2),
        "one_at_a_time_img_s": round(max(single), 2), "batched_img_s": round(max(batched), 2),
        "speedup": round(speedup, 2), "one_at_a_time_cpu_s_per_img": round(min(single_cpu), 4),
        "batched_cpu_s_per_img": round(min(batched_cpu), 4), "rss_after_embedding_gb": round(rss / gb, 3),
        "peak_rss_gb": round(peak / gb, 3), "baseline_import_rss_gb": round(baseline / gb, 3),
        "model_rss_gb": round((rss - baseline) / gb, 3),
    }
    print(f"model {args.model} on {model.device} ({report['dtype']}), torch threads {report['torch_threads']}, "
          f"{args.frames} frames 640x360, batch {args.batch_size}, best of {args.rounds} rounds")
    print(f"load (image tower only, as a worker): {load_s:.2f} s")
    print(f"one at a time : {max(single):8.2f} images/s   (rounds: {', '.join(f'{x:.2f}' for x in single)})")
    print(f"batched       : {max(batched):8.2f} images/s   (rounds: {', '.join(f'{x:.2f}' for x in batched)})")
    print(f"CPU time per image (less sensitive to other load on the machine): one at a time "
          f"{min(single_cpu) * 1000:.1f} ms, batched {min(batched_cpu) * 1000:.1f} ms "
          f"({min(single_cpu) / min(batched_cpu):.2f}x)")
    ok_speed = speedup >= TARGET_SPEEDUP
    print(f"speedup batched / one-at-a-time: {speedup:.2f}x  (target >= {TARGET_SPEEDUP}x: "
          f"{'PASS' if ok_speed else 'FAIL'})")
    ok_rss = rss / gb <= TARGET_RSS_GB
    print(f"RSS after embedding: {rss / gb:.3f} GB  (target <= {TARGET_RSS_GB} GB: {'PASS' if ok_rss else 'FAIL'})")
    print(f"  baseline (import torch+open_clip+pipeline.clip, no model, same run): {baseline / gb:.3f} GB; "
          f"model and its working memory: {(rss - baseline) / gb:.3f} GB")
    print(f"peak RSS (includes the checkpoint's transient copy while loading): {peak / gb:.3f} GB")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
