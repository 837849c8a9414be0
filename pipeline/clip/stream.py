"""CLIP behind decoding: the model loads and scenes are embedded while the video is still being decoded.

Why: sequentially, a job decodes (most of its time), then imports torch and
builds the model, then embeds; nothing overlaps, and on a worker's first job
the load alone costs more than the forward passes. Here a job opens an
:class:`OverlappedEmbedding` once the video is probed: a background thread
loads the process's model at once (never at import, never in a parent before
fork: it runs inside the job, in the process that does the job), then embeds
the scenes' best frames as they close, in the same batches of
``BATCH_SIZE`` the sequential path uses (scenes 0-15, 16-31, ...), through the
same ``embed_frames``. So per-scene timeouts, NULL-with-reason degradation,
ordering and even the vectors themselves (same batch composition) are exactly
those of embedding afterwards; only the last, partial batch is left for after
decoding.

With ``CLIP_ENABLED=false`` no thread starts and nothing imports torch.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from pipeline.clip import BATCH_SIZE, FrameToEmbed, embed_frames
from pipeline.clip.frames import disabled_results
from pipeline.clip.memory import share_one_malloc_arena
from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.core.types import EmbeddingResult

log = get_logger(__name__)

_JOIN_POLL_S = 0.5  # waits in short slices so signal handlers (Celery's soft time limit) run promptly


class OverlappedEmbedding:
    """Scenes go in with :meth:`add` as they close; :meth:`results` returns one result per scene, in order.

    Use as a context manager: leaving it because of an exception (or without
    calling :meth:`results`) abandons the work: the thread stops after its
    current batch, and nothing waits for it.
    """

    def __init__(self, settings: Settings, *, batch_size: int = BATCH_SIZE) -> None:
        self.settings = settings
        self.batch_size = max(1, batch_size)
        self._frames: list[FrameToEmbed] = []
        self._results: list[EmbeddingResult] = []
        self._closed = False
        self._abandoned = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.busy_ms = 0.0  # time the thread spent loading the model and embedding

    def __enter__(self) -> OverlappedEmbedding:
        if self.settings.clip_enabled:
            share_one_malloc_arena()  # before the thread exists, so it gets no malloc arena of its own
            self._thread = threading.Thread(target=self._run, name="vidx-embed-stream", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or not self._closed:  # failed, or left without results(): stop the thread
            with self._cond:
                self._abandoned = True
                self._cond.notify_all()

    def add(self, frame: FrameToEmbed) -> None:
        """Queue a closed scene's best frame (its file must already be written)."""
        with self._cond:
            self._frames.append(frame)
            self._cond.notify_all()

    @property
    def embedded(self) -> int:
        """Scenes whose results are in so far (progress, tests)."""
        with self._cond:
            return len(self._results)

    def results(self) -> list[EmbeddingResult]:
        """Wait for the scenes still being embedded; one result per ``add``, in order."""
        if self._thread is None:
            return disabled_results(self._frames, self.settings)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        while self._thread.is_alive():
            self._thread.join(_JOIN_POLL_S)
        done = len(self._results)
        if done < len(self._frames):  # the thread died of a bug: embed the rest here, the same way
            log.error("embed_stream_incomplete", embedded=done, scenes=len(self._frames))
            self._results.extend(embed_frames(self._frames[done:], self.settings, batch_size=self.batch_size))
        return list(self._results)

    def _run(self) -> None:
        started = time.perf_counter()
        self._load_model()
        self.busy_ms += (time.perf_counter() - started) * 1000.0
        while True:
            with self._cond:
                while not self._abandoned and not self._batch_ready():
                    if self._closed and len(self._results) >= len(self._frames):
                        return
                    self._cond.wait()
                if self._abandoned:
                    return
                start = len(self._results)
                batch = self._frames[start:start + self.batch_size]
            started = time.perf_counter()
            try:
                results = embed_frames(batch, self.settings, batch_size=self.batch_size)
            except Exception:  # embed_frames degrades instead of raising; a bug here is covered by results()
                log.exception("embed_stream_failed", scenes=len(batch))
                return
            self.busy_ms += (time.perf_counter() - started) * 1000.0
            with self._cond:
                self._results.extend(results)

    def _batch_ready(self) -> bool:
        pending = len(self._frames) - len(self._results)
        return pending >= self.batch_size or (self._closed and pending > 0)

    def _load_model(self) -> None:
        """Load the process's model now, so the first batch does not wait for it.

        A failure is not reported here: the model singleton remembers it and
        ``embed_frames`` gives every scene its reason, as on the sequential path.
        """
        try:
            from pipeline.clip import get_model  # torch: loaded on this thread, off the import path

            get_model(self.settings, text=False)
        except Exception as exc:  # noqa: BLE001 -- reported per scene by embed_frames
            log.debug("embed_stream_model_not_loaded", error=str(exc)[:200])
