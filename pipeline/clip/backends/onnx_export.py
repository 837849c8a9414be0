"""Export a CLIP image tower to ONNX (run as a child process: ``python -m pipeline.clip.backends.onnx_export``).

Why a child process: exporting traces the torch tower and serialises a
second copy of its weights; done in the worker it would add ~0.7 GB to the
worker's peak RSS for ever after. The child builds the tower from the same
weights the worker would load (the checkpoint, memory-mapped, or the
pretrained tag from CLIP_CACHE_DIR, never downloading), writes
``image_tower.onnx`` with its weights in ``image_tower.onnx.data`` (external
data, which ONNX Runtime memory-maps), and refuses its own result unless ONNX
Runtime's embeddings equal torch's (cosine >= ``MIN_COSINE``) on a blank and
two random images.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

ONNX_FILE = "image_tower.onnx"
PREPROCESS_FILE = "preprocess.json"  # the model's preprocess config: the worker's transform (backends/transform.py)
OPSET = 17
MIN_COSINE = 0.9999


def build_tower(model_name: str, pretrained: str, checkpoint: Path | None, cache_dir: Path):
    """The torch image tower (fp32, CPU) and its preprocess config, from the weights the worker would use."""
    import open_clip

    from pipeline.clip.lean_load import LeanLoadUnsupported, load_image_tower, open_clip_create_kwargs

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


def export(tower, size, out_dir: Path) -> Path:
    """Write the ONNX graph (dynamic batch) with external weights into ``out_dir``; returns the .onnx path."""
    import onnx
    import torch

    side = (size, size) if isinstance(size, int) else tuple(size)
    single = out_dir / "single.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            tower, (torch.zeros(2, 3, *side),), str(single), dynamo=False, opset_version=OPSET,
            input_names=["pixels"], output_names=["features"],
            dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
        )
    graph = onnx.load(str(single))
    path = out_dir / ONNX_FILE
    onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=ONNX_FILE + ".data", size_threshold=1024)
    single.unlink()
    return path


def check_equal(tower, size, path: Path) -> float:
    """Smallest cosine between torch's and ONNX Runtime's features over three test images."""
    import numpy as np
    import onnxruntime
    import torch

    side = (size, size) if isinstance(size, int) else tuple(size)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.cat([torch.zeros(1, 3, *side), torch.randn(2, 3, *side, generator=generator)])
    with torch.inference_mode():
        expected = tower(pixels).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": pixels.numpy()})[0]
    norms = np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    return float(((expected * got).sum(axis=1) / np.where(norms == 0, 1.0, norms)).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    tower, cfg = build_tower(args.model, args.pretrained, args.checkpoint, args.cache_dir)
    size = cfg.get("size", 224)
    path = export(tower, size, args.out)
    cosine = check_equal(tower, size, path)
    if cosine < MIN_COSINE:
        print(f"export refused: ONNX Runtime differs from torch (cosine {cosine:.6f} < {MIN_COSINE})", file=sys.stderr)
        return 3
    (args.out / PREPROCESS_FILE).write_text(json.dumps(cfg))
    (args.out / "export.json").write_text(json.dumps({"model": args.model, "min_cosine_vs_torch": cosine}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
