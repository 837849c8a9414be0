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

Backends (``--backends torch,onnx,openvino,onnx-int8``, issue 13): each in a
fresh process (so its RSS is its own: peak while loading, steady after
embedding), batch 16 through ``embed_frames``, the processes alternating over
--repeats, medians. ``onnx-int8`` is the ONNX export dynamically quantised
(onnxruntime.quantization), measured only. Cosine against torch's embeddings
of the same frames; ``--frames-from VIDEO`` takes the frames from a video
(default: bench/scenes_video.py's when cached) instead of synthetic JPEGs.
Adoption rule: the fastest backend >= 1.3x torch with min cosine >= 0.999.
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

from bench.checkpoints import random_checkpoint  # noqa: E402

CACHE = ROOT / "bench" / ".cache"

TARGET_SPEEDUP = 1.5
TARGET_RSS_GB = 1.2
ADOPT_SPEEDUP = 1.3
ADOPT_COSINE = 0.999


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


def video_frames(video: Path, directory: Path, count: int) -> list[Path]:
    """``count`` 640x360 JPEGs spread over ``video`` (decoded frames, as the pipeline's best frames are)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = sorted(directory.glob("frame_*.jpg"))
    if len(paths) < count:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(video)],
                             capture_output=True, text=True, check=True)
        step = float(out.stdout.strip()) / (count + 1)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-vf", f"fps=1/{step:.3f},scale=640:360",
                        "-frames:v", str(count), "-q:v", "3", str(directory / "frame_%04d.jpg")], check=True)
        paths = sorted(directory.glob("frame_*.jpg"))
    return paths[:count]


def int8_tower(tower) -> None:
    """Swap a RuntimeImageTower's session for one on the dynamically quantised export (cached)."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = CACHE / f"int8-{tower.path.parent.name}.onnx"
    if not quantized.is_file():
        quantize_dynamic(str(tower.path), str(quantized), weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    tower._run = lambda pixels: session.run(None, {"pixels": pixels})[0]


def backend_child(args, checkpoint: Path, frame_paths: list[Path], out: Path) -> None:
    """One backend in this fresh process: load, warm up, rounds of batch 16; JSON + vectors to ``out``."""
    import numpy as np

    from pipeline.clip import FrameToEmbed, embed_frames, get_model
    from pipeline.core.config import load_settings

    backend = args.backend_child
    env = {"CLIP_MODEL_NAME": args.model, "CLIP_CHECKPOINT": str(checkpoint), "CLIP_DEVICE": args.device,
           "CLIP_TIMEOUT_S": "120", "CLIP_PRETRAINED": "openai", "CLIP_BACKEND": backend.split("-")[0]}
    if args.threads:
        env["CLIP_CPU_THREADS"] = str(args.threads)
    settings = load_settings(env)
    frames = [FrameToEmbed(p, {}) for p in frame_paths]
    start = time.perf_counter()
    model = get_model(settings, text=False)
    load_s = time.perf_counter() - start
    peak_load = peak_rss_bytes()
    if backend == "onnx-int8":
        int8_tower(model.model)
    timed(frames[: args.batch_size], settings, args.batch_size)  # warm-up
    rates = [timed(frames, settings, args.batch_size) for _ in range(args.rounds)]
    results = embed_frames(frames, settings, batch_size=args.batch_size)
    np.save(out.with_suffix(".npy"), np.array([r.vector for r in results], dtype=np.float32))
    out.write_text(json.dumps({
        "backend": backend, "runs_as": type(model.model).__name__, "load_s": load_s,
        "img_s": max(r for r, _ in rates), "cpu_s_per_img": min(c for _, c in rates),
        "peak_load_gb": peak_load / 1e9, "peak_gb": peak_rss_bytes() / 1e9, "steady_gb": rss_bytes() / 1e9,
    }))


def backend_table(args, checkpoint: Path, frame_paths: list[Path]) -> None:
    """Every backend in its own process, alternating over --repeats; images/s, RSS, cosine vs torch."""
    import statistics

    import numpy as np

    backends = [b for b in args.backends.split(",") if b]
    if "torch" not in backends:
        backends.insert(0, "torch")
    runs: dict[str, list[dict]] = {b: [] for b in backends}
    for repeat in range(args.repeats):
        for backend in backends if repeat % 2 == 0 else list(reversed(backends)):
            out = CACHE / f"backend-{backend}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--model", args.model, "--checkpoint", str(checkpoint),
                   "--device", args.device, "--batch-size", str(args.batch_size), "--rounds", str(args.rounds),
                   "--backend-child", backend, "--child-out", str(out), "--frame-paths", *map(str, frame_paths)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            subprocess.run(cmd, cwd=ROOT, check=True)
            runs[backend].append({**json.loads(out.read_text()), "vectors": np.load(out.with_suffix(".npy"))})
    reference = runs["torch"][0]["vectors"]
    torch_rate = statistics.median(r["img_s"] for r in runs["torch"])
    print(f"\nbackends: {len(frame_paths)} frames, batch {args.batch_size}, threads {args.threads or 'default'}, "
          f"{args.repeats} processes each (alternating), best of {args.rounds} rounds per process, medians")
    print(f"{'backend':<11} {'runs as':<18} {'img/s':>7} {'vs torch':>8} {'cpu ms/img':>10} {'load s':>7} "
          f"{'peak GB':>8} {'steady GB':>9} {'min cos':>9}")
    eligible = []
    for backend in backends:
        rows = runs[backend]
        rate = statistics.median(r["img_s"] for r in rows)
        cosine = float(min((reference * r["vectors"]).sum(axis=1).min() for r in rows))
        ratio = rate / torch_rate
        print(f"{backend:<11} {rows[0]['runs_as']:<18} {rate:7.2f} {ratio:7.2f}x "
              f"{statistics.median(r['cpu_s_per_img'] for r in rows) * 1000:10.1f} "
              f"{statistics.median(r['load_s'] for r in rows):7.2f} {max(r['peak_gb'] for r in rows):8.3f} "
              f"{statistics.median(r['steady_gb'] for r in rows):9.3f} {cosine:9.6f}")
        if backend != "torch" and ratio >= ADOPT_SPEEDUP and cosine >= ADOPT_COSINE:
            eligible.append((rate, backend))
    pick = max(eligible)[1] if eligible else "torch"
    print(f"adoption rule (>= {ADOPT_SPEEDUP}x torch, cosine >= {ADOPT_COSINE}): fastest eligible is {pick}")


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
    parser.add_argument("--backends", default="torch,onnx,openvino,onnx-int8", help="comma-separated; empty: skip")
    parser.add_argument("--repeats", type=int, default=2, help="processes per backend")
    parser.add_argument("--frames-from", type=Path, help="take the frames from this video")
    parser.add_argument("--skip-batching", action="store_true", help="only the backend table")
    parser.add_argument("--backend-child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--frame-paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    checkpoint = args.checkpoint or random_checkpoint(args.model)
    if args.backend_child:
        backend_child(args, checkpoint, args.frame_paths, args.child_out)
        return 0
    video = args.frames_from or CACHE / "scenes_1920x1080.mp4"
    frame_paths = (video_frames(video, CACHE / f"video_frames_{video.stem}", args.frames) if video.is_file()
                   else make_frames(CACHE / "embed_frames", args.frames))
    if args.backends and args.skip_batching:
        backend_table(args, checkpoint, frame_paths)
        return 0
    baseline = baseline_import_rss()

    from pipeline.clip import FrameToEmbed, get_model
    from pipeline.core.config import load_settings

    env = {"CLIP_MODEL_NAME": args.model, "CLIP_CHECKPOINT": str(checkpoint), "CLIP_DEVICE": args.device,
           "CLIP_TIMEOUT_S": "120"}
    if args.threads:
        env["CLIP_CPU_THREADS"] = str(args.threads)
    settings = load_settings(env)
    frames = [FrameToEmbed(p, {}) for p in frame_paths]

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
    if args.backends:
        backend_table(args, checkpoint, frame_paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
