"""The loaded CLIP model with its transforms, tokenizer and inference thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.clip.runner import InferenceThread
from pipeline.core.log import get_logger

log = get_logger(__name__)


@dataclass
class ClipModel:
    """An open_clip model ready for inference; every forward pass runs on ``runner``.

    ``pretrained`` is the weights' provenance (the CLIP_CHECKPOINT path, or
    the CLIP_PRETRAINED tag). ``model`` is the whole CLIP model, or only its
    image tower when loaded for embedding frames (``text_encoder`` None): a
    worker never encodes text, and the text tower is ~40% of ViT-B-32.
    ``make_cpu_twin`` loads the same weights on CPU, for the one CPU retry
    after a CUDA out-of-memory error.
    """

    model: torch.nn.Module
    image_encoder: Callable[[torch.Tensor], torch.Tensor]
    text_encoder: Callable[[torch.Tensor], torch.Tensor] | None
    transform: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor] | None
    model_name: str
    pretrained: str
    device: str
    dtype: torch.dtype
    embed_dim: int
    input_size: int
    interpolation: str
    load_time_ms: float
    runner: InferenceThread
    make_cpu_twin: Callable[[], ClipModel] | None = None
    _cpu_twin: ClipModel | None = field(default=None, repr=False)
    _twin_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def forward_images(self, batch: torch.Tensor) -> tuple[np.ndarray, float]:
        """Raw image features (n x d float32) and the pass's time in ms. Runs on the inference thread."""
        start = time.perf_counter()
        with torch.inference_mode():
            features = self.image_encoder(batch.to(self.device, self.dtype))
            out = features.float().cpu().numpy()
        return out, (time.perf_counter() - start) * 1000.0

    def forward_texts(self, tokens: torch.Tensor) -> tuple[np.ndarray, float]:
        """Raw text features (n x d float32) and the pass's time in ms. Runs on the inference thread."""
        start = time.perf_counter()
        with torch.inference_mode():
            assert self.text_encoder is not None, "loaded without its text tower"
            features = self.text_encoder(tokens.to(self.device))
            out = features.float().cpu().numpy()
        return out, (time.perf_counter() - start) * 1000.0

    @property
    def has_text(self) -> bool:
        return self.text_encoder is not None

    def infer(self, kind: str, inputs: torch.Tensor, timeout_s: float) -> tuple[np.ndarray, float, str]:
        """(features, ms, device used) for ``kind`` "images" or "texts", within ``timeout_s``.

        A CUDA out-of-memory error is retried once on a CPU copy of the model
        (logged); any other error, and ``InferenceTimeout``, propagate.
        """
        forward = self.forward_images if kind == "images" else self.forward_texts
        try:
            features, ms = self.runner.run(lambda: forward(inputs), timeout_s)
            return features, ms, self.device
        except torch.OutOfMemoryError as exc:
            if self.device == "cpu" or self.make_cpu_twin is None:
                raise
            log.warning("clip_cuda_oom_retry_on_cpu", model=self.model_name, batch=len(inputs), error=str(exc)[:200])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return self.cpu_twin().infer(kind, inputs, timeout_s)

    def cpu_twin(self) -> ClipModel:
        """The same weights on CPU, loaded on first need and kept."""
        with self._twin_lock:
            if self._cpu_twin is None:
                assert self.make_cpu_twin is not None
                self._cpu_twin = self.make_cpu_twin()
            return self._cpu_twin

    def close(self) -> None:
        """Stop the inference threads (the model is being replaced)."""
        self.runner.stop()
        if self._cpu_twin is not None:
            self._cpu_twin.runner.stop()
