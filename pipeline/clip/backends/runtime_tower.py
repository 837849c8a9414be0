"""The image tower run by ONNX Runtime or OpenVINO from the cached export, called like the torch tower.

The worker never builds the torch tower on this path: the export (made once,
in a child process) is the only copy of the weights it maps, so peak and
steady RSS are torch's import plus the runtime's model (see docs/clip.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.clip.backends import ONNX, OPENVINO
from pipeline.clip.backends.export_cache import cached_export, export_key
from pipeline.clip.backends.onnx_export import ONNX_FILE, PREPROCESS_FILE
from pipeline.clip.backends.transform import eval_transform
from pipeline.core.config import Settings
from pipeline.core.log import get_logger

log = get_logger(__name__)

EXPORT_TIMEOUT_S = 900.0
_REPO_ROOT = Path(__file__).resolve().parents[3]


class RuntimeImageTower(torch.nn.Module):
    """``forward(pixels) -> features`` through a non-torch runtime (float32 on CPU)."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], backend: str, path: Path) -> None:
        super().__init__()
        self._run = run
        self.backend = backend
        self.path = path

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(pixels.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.asarray(self._run(array)))


def _backend_version(backend: str) -> str:
    if backend == ONNX:
        import onnxruntime  # only the configured runtime loads

        return f"onnxruntime-{onnxruntime.__version__}"
    import openvino  # optional extra (vidx[openvino]): only the configured runtime loads

    return f"openvino-{openvino.__version__}"


def _onnx_runtime(path: Path, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime  # only the configured runtime loads

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: one per physical core
    options.inter_op_num_threads = 1
    # the pass shares the cores with ffmpeg (pipeline/clip/stream.py): waiting threads must sleep, not spin
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda pixels: session.run(None, {"pixels": pixels})[0]


def _openvino(path: Path, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    import openvino  # optional extra (vidx[openvino]): only the configured runtime loads

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}  # f32: equal to torch
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    return lambda pixels: compiled(pixels)[0]


def _export_in_child(settings: Settings, out_dir: Path) -> None:
    """Export (a torch child), then check the result against torch's features (a child without torch)."""
    cmd = [sys.executable, "-m", "pipeline.clip.backends.onnx_export", "--model", settings.clip_model_name,
           "--pretrained", settings.clip_pretrained, "--cache-dir", str(settings.clip_cache_dir), "--out", str(out_dir)]
    if settings.clip_checkpoint is not None:
        cmd += ["--checkpoint", str(settings.clip_checkpoint)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    for stage in ("export", "check"):
        proc = subprocess.run([*cmd, "--stage", stage], env=env, capture_output=True, text=True,
                              timeout=EXPORT_TIMEOUT_S)
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            raise RuntimeError(f"ONNX {stage} failed ({proc.returncode}): {lines[-1] if lines else 'no output'}")


def load_runtime_tower(
    settings: Settings, backend: str
) -> tuple[RuntimeImageTower, Callable[[Any], torch.Tensor], dict[str, Any]]:
    """(image tower on ``backend``, eval transform, preprocess cfg), exporting first when no cached export fits.

    Imports neither open_clip nor torchvision. Raises ImportError, OSError, RuntimeError, ValueError or
    subprocess errors (runtime missing, export refused or failed, unreadable export): the caller falls
    back to torch.
    """
    if backend not in (ONNX, OPENVINO):
        raise ValueError(f"unknown backend {backend!r}")
    key = export_key(settings, _backend_version(backend))
    directory = cached_export(settings, key, lambda tmp: _export_in_child(settings, tmp))
    preprocess_cfg = json.loads((directory / PREPROCESS_FILE).read_text())
    transform = eval_transform(preprocess_cfg)
    make = _onnx_runtime if backend == ONNX else _openvino
    tower = RuntimeImageTower(make(directory / ONNX_FILE, settings.clip_cpu_threads), backend, directory / ONNX_FILE)
    return tower, transform, preprocess_cfg
