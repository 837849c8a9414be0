"""Export a CLIP image tower to ONNX (run as a child process: ``python -m pipeline.clip.backends.onnx_export``).

Why a child process: exporting traces the torch tower and holds the traced
program beside it; done in the worker it would stay in the worker's peak RSS
for ever after. The child builds the tower from the same weights the worker
would load (the checkpoint, memory-mapped, or the pretrained tag from
CLIP_CACHE_DIR, never downloading), writes ``image_tower.onnx`` with its
weights in ``image_tower.onnx.data`` (external data, which ONNX Runtime
memory-maps), and refuses its own result unless ONNX Runtime's embeddings
equal torch's (cosine >= ``MIN_COSINE``) on a blank and two random images.

The exporter is torch's dynamo one (``torch.export`` + onnxscript), which
writes the weights straight into the external-data file: the export stage peaks
at 1.36 GB for ViT-B-32, where the TorchScript exporter serialised the whole
model in memory first and peaked at 2.28 GB (docs/clip.md). The check runs
as a second stage in a child of its own (``--stage check``) that imports no
torch: the export stage saves torch's features for the check images beside
the export, and ONNX Runtime's session (the mapped weights plus its packed
copy) never sits in the same process as torch and the traced tower.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ONNX_FILE = "image_tower.onnx"
PREPROCESS_FILE = "preprocess.json"  # the model's preprocess config: the worker's transform (backends/transform.py)
CHECK_PIXELS_FILE = "check_pixels.npy"  # the check stage's inputs and torch's features for them (removed after)
CHECK_FEATURES_FILE = "check_features.npy"
OPSET = 18  # the dynamo exporter's lowest; ONNX Runtime >= 1.14 runs it
MAX_BATCH = 4096
MIN_COSINE = 0.9999


def build_tower(model_name: str, pretrained: str, checkpoint: Path | None, cache_dir: Path):
    """The torch image tower (fp32, CPU) and its preprocess config, from the weights the worker would use."""
    import open_clip  # torch and open_clip: the export stage only (the check stage runs without them)

    from pipeline.clip.lean_load import LeanLoadUnsupported, load_image_tower, open_clip_create_kwargs  # imports torch

    if checkpoint is not None:
        config = checkpoint.parent / f"{model_name}.json"
        if config.is_file():
            open_clip.add_model_config(config)
    create_kwargs = open_clip_create_kwargs(model_name, pretrained)
    if checkpoint is not None:
        try:
            tower, _, cfg = load_image_tower(checkpoint, model_name, "cpu", "fp32", create_kwargs)
            return tower, cfg
        except LeanLoadUnsupported:
            pass
    model = open_clip.create_model(model_name, pretrained=str(checkpoint or pretrained), cache_dir=str(cache_dir),
                                   require_pretrained=True, **create_kwargs)
    return model.visual.eval(), open_clip.get_model_preprocess_cfg(model)


def _side(size: Any) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_pixels(size: Any):
    """The check's inputs: a blank image and two random ones (fixed seed), as a float32 numpy batch."""
    import torch  # the export stage only: the check stage runs without torch

    side = _side(size)
    generator = torch.Generator().manual_seed(0)
    return torch.cat([torch.zeros(1, 3, *side), torch.randn(2, 3, *side, generator=generator)]).numpy()


def torch_features(tower, pixels):
    """What the export must reproduce: torch's own features for ``pixels``."""
    import torch  # the export stage only: the check stage runs without torch

    with torch.inference_mode():
        return tower(torch.from_numpy(pixels)).numpy()


def export(tower, size, out_dir: Path) -> Path:
    """Write the ONNX graph (dynamic batch) with external weights into ``out_dir``; returns the .onnx path."""
    import torch  # the export stage only: the check stage runs without torch

    path = out_dir / ONNX_FILE
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tower, (torch.zeros(2, 3, *_side(size)),), str(path), dynamo=True, opset_version=OPSET,
            input_names=["pixels"], output_names=["features"], dynamic_shapes=({0: batch},),
            external_data=True, optimize=True, verbose=False,
        )
    return path


def min_cosine(expected, path: Path, pixels) -> float:
    """Smallest cosine between ``expected`` and ONNX Runtime's features for ``pixels``."""
    import onnxruntime  # the check stage only

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": pixels})[0]
    norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    return float(((expected * got).sum(axis=1) / np.where(norms == 0, 1.0, norms)).min())


def export_stage(args: argparse.Namespace) -> int:
    """torch's side: the export, the preprocess config and torch's features for the check images."""
    tower, cfg = build_tower(args.model, args.pretrained, args.checkpoint, args.cache_dir)
    size = cfg.get("size", 224)
    pixels = check_pixels(size)
    np.save(args.out / CHECK_PIXELS_FILE, pixels)
    np.save(args.out / CHECK_FEATURES_FILE, torch_features(tower, pixels))
    export(tower, size, args.out)
    (args.out / PREPROCESS_FILE).write_text(json.dumps(cfg))
    return 0


def check_stage(args: argparse.Namespace) -> int:
    """ONNX Runtime's side, without torch: refuse the export unless it reproduces torch's features."""
    pixels, expected = np.load(args.out / CHECK_PIXELS_FILE), np.load(args.out / CHECK_FEATURES_FILE)
    cosine = min_cosine(expected, args.out / ONNX_FILE, pixels)
    if cosine < MIN_COSINE:
        print(f"export refused: ONNX Runtime differs from torch (cosine {cosine:.6f} < {MIN_COSINE})", file=sys.stderr)
        return 3
    (args.out / CHECK_PIXELS_FILE).unlink()
    (args.out / CHECK_FEATURES_FILE).unlink()
    (args.out / "export.json").write_text(json.dumps({"model": args.model, "min_cosine_vs_torch": cosine}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=("export", "check"), default="export")
    parser.add_argument("--model", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return export_stage(args) if args.stage == "export" else check_stage(args)


if __name__ == "__main__":
    sys.exit(main())
