"""Best frames -> CLIP embeddings, in batches, each scene with its own timeout.

Never raises for model, image, timeout or memory problems: such a scene gets
``vector=None`` and ``metadata["error"]`` says why; the rest go on.

Timeout rule (``CLIP_TIMEOUT_S`` = T, per scene):
  * Frames are embedded in batches of up to ``BATCH_SIZE``. A batch of k
    scenes must be back within k x T of being submitted: each scene brings
    its own budget, so batching never gives a scene less time than embedding
    it alone would.
  * A batch that misses its deadline is waited for (up to the hang limit,
    ``runner.HANG_FACTOR`` x its deadline), then its scenes are retried one
    at a time, each within T. Only a scene that misses its own T gets
    NULL + "Timeout after T s"; the batch's other scenes are embedded.
  * A forward pass still running at the hang limit is hung: its scenes get
    the timeout error, the model is dropped (its thread is a daemon and is
    abandoned) and the next batch loads a fresh model. The wait for any
    scene is therefore bounded, so a hung pass cannot hang the process.
``inference_time_ms`` is the scene's share of its batch's forward pass
(pass time / scenes in the batch); image reading is not included.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.clip.errors import (
    EMBEDDING_PREFIX,
    IMAGE_READ_PREFIX,
    INFERENCE_PREFIX,
    ClipUnavailableError,
    InferenceTimeout,
    timeout_reason,
)
from pipeline.clip.frames import BATCH_SIZE, FrameToEmbed, clip_metadata, disabled_results
from pipeline.clip.memory import release_free_memory
from pipeline.clip.model import ClipModel
from pipeline.clip.preprocess import ImageReadError, to_tensor
from pipeline.clip.singleton import configured_device, discard_hung_model, get_model
from pipeline.core.config import Settings
from pipeline.core.errors import always_propagate, first_line
from pipeline.core.log import get_logger
from pipeline.core.types import EMBEDDING_DIM, EmbeddingResult

log = get_logger(__name__)


def embed_frames(
    frames: Sequence[FrameToEmbed], settings: Settings, *, batch_size: int = BATCH_SIZE
) -> list[EmbeddingResult]:
    """One :class:`EmbeddingResult` per frame, in order (see the module doc for the timeout rule)."""
    return _Embedding(list(frames), settings, max(1, batch_size)).run()


def embed_one_or_raise(path: Path, settings: Settings) -> np.ndarray:
    """One frame's vector exactly as ``embed_frames`` makes it, raising instead of degrading."""
    result = embed_frames([FrameToEmbed(Path(path), {})], settings)[0]
    if result.vector is None:
        raise ClipUnavailableError(str(result.metadata["error"]))
    return np.asarray(result.vector, dtype=np.float32)


class _Embedding:
    """One ``embed_frames`` call: fills ``results`` batch by batch."""

    def __init__(self, frames: list[FrameToEmbed], settings: Settings, batch_size: int) -> None:
        self.frames = frames
        self.settings = settings
        self.batch_size = batch_size
        self.results: list[EmbeddingResult | None] = [None] * len(frames)
        self.timeout_error = timeout_reason(settings.clip_timeout_s)

    def run(self) -> list[EmbeddingResult]:
        if not self.settings.clip_enabled:
            return disabled_results(self.frames, self.settings)
        else:
            for start in range(0, len(self.frames), self.batch_size):
                chunk = list(range(start, min(len(self.frames), start + self.batch_size)))
                try:
                    self._embed_chunk(chunk)
                except always_propagate():  # e.g. the task's soft time limit: the job ends, not the scene
                    raise
                except Exception as exc:  # last resort: a bug here must not fail the video
                    log.exception("clip_embedding_failed", scenes=len(chunk))
                    for i in chunk:
                        if self.results[i] is None:
                            self._fail(i, f"{EMBEDDING_PREFIX}{type(exc).__name__}: {first_line(exc)}")
            release_free_memory()  # a worker holds the model for many videos: keep its RSS at what it holds
        for i, result in enumerate(self.results):
            if result is None:  # cannot happen by design; keep one result per frame regardless
                self._fail(i, f"{EMBEDDING_PREFIX}no result")
        return list(self.results)  # type: ignore[arg-type]

    def _embed_chunk(self, indices: list[int]) -> None:
        try:
            model = get_model(self.settings, text=False)  # per chunk: a hung model is replaced for the next chunk
        except ClipUnavailableError as exc:
            for i in indices:
                self._fail(i, str(exc))
            return
        items: list[tuple[int, torch.Tensor]] = []
        max_side = max(self.settings.clip_max_image_size, model.input_size)
        for i in indices:
            try:
                items.append((i, to_tensor(self.frames[i].path, model.transform, max_side, model.interpolation)))
            except ImageReadError as exc:
                self._fail(i, f"{IMAGE_READ_PREFIX}{exc}", model)
            except always_propagate():
                raise
            except Exception as exc:  # noqa: BLE001 -- e.g. a transform refusing an odd image: still this frame's problem
                self._fail(i, f"{IMAGE_READ_PREFIX}{type(exc).__name__}: {first_line(exc)}", model)
        if items:
            self._embed_group(model, items)

    def _embed_group(self, model: ClipModel, items: list[tuple[int, torch.Tensor]]) -> None:
        batch = torch.stack([tensor for _, tensor in items])
        try:
            features, ms, device = model.infer("images", batch, self.settings.clip_timeout_s * len(items))
        except InferenceTimeout as exc:
            if exc.hung:
                discard_hung_model(model)
            elif len(items) > 1:
                log.warning("clip_batch_timeout_retrying_singly", scenes=len(items), deadline_s=exc.timeout_s)
                for item in items:
                    self._embed_group(model, [item])
                return
            for i, _ in items:
                self._fail(i, self.timeout_error, model)
            return
        except always_propagate():
            raise
        except Exception as exc:  # noqa: BLE001 -- e.g. out of memory on CPU: the scenes degrade, the video goes on
            log.error("clip_inference_failed", scenes=len(items), error=str(exc)[:300])
            for i, _ in items:
                self._fail(i, f"{INFERENCE_PREFIX}{type(exc).__name__}: {first_line(exc)}", model)
            return
        for (i, _), row in zip(items, features, strict=True):
            self._finish(i, row, ms / len(items), device, model)

    def _finish(self, i: int, row: np.ndarray, ms: float, device: str, model: ClipModel) -> None:
        vector = np.asarray(row, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if vector.shape != (EMBEDDING_DIM,):
            self._fail(i, f"Embedding has width {vector.shape[-1]}, the database holds {EMBEDDING_DIM}", model)
            return
        if not np.isfinite(vector).all() or norm == 0.0:
            self._fail(i, "Invalid embedding: zero or non-finite values", model)
            return
        if self.settings.clip_normalize:
            vector = vector / norm
        if self.settings.clip_debug_log:
            log.info("clip_scene_embedded", frame=self._label(i), inference_ms=round(ms, 3), norm=round(norm, 4),
                     device=device)
        self.results[i] = EmbeddingResult(
            vector=[float(x) for x in vector],
            metadata=self._metadata(i, model, device=device, inference_time_ms=round(ms, 3), error=None),
        )

    def _fail(self, i: int, error: str, model: ClipModel | None = None) -> None:
        device = model.device if model is not None else configured_device(self.settings)
        self.results[i] = EmbeddingResult(
            vector=None, metadata=self._metadata(i, model, device=device, inference_time_ms=None, error=error)
        )

    def _label(self, i: int) -> str:
        return self.frames[i].frame_label

    def _metadata(
        self, i: int, model: ClipModel | None, *, device: str, inference_time_ms: float | None, error: str | None
    ) -> dict[str, Any]:
        return clip_metadata(
            self.settings, self.frames[i], embed_dim=model.embed_dim if model is not None else None,
            device=device, inference_time_ms=inference_time_ms, error=error,
        )
