"""The per-process model: loaded lazily on first use, shared by all threads and videos.

Never loaded at import time. A fork drops the parent's model in the child
(its inference thread does not survive a fork), so a worker child always
loads its own. A failed load is remembered for ``LOAD_RETRY_AFTER_S`` so a
worker with a bad configuration does not retry the load for every video,
yet recovers (e.g. network back) without a restart. A model whose forward
pass hung is dropped and reloaded on next use, at most ``MAX_HUNG_MODELS``
times per process: after that the model is refused until the worker restarts.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from pipeline.clip.errors import ClipUnavailableError
from pipeline.clip.frames import DISABLED_MESSAGE, weights_label
from pipeline.clip.loader import load_clip, resolve_device
from pipeline.clip.model import ClipModel
from pipeline.core.config import Settings
from pipeline.core.log import get_logger

log = get_logger(__name__)

LOAD_RETRY_AFTER_S = 60.0
MAX_HUNG_MODELS = 2


@dataclass
class _State:
    model: ClipModel | None = None
    key: tuple | None = None
    failure: tuple[tuple, str, float] | None = None  # (key, message, when)
    hung_models: int = 0


_lock = threading.Lock()
_state = _State()


def model_key(settings: Settings) -> tuple:
    """What identifies the model settings ask for; a different key replaces the loaded model."""
    return (settings.clip_model_name, weights_label(settings), settings.clip_pretrained,
            settings.clip_device, str(settings.clip_cache_dir), settings.clip_backend)


def get_model(settings: Settings, *, text: bool = True) -> ClipModel:
    """The process's model for ``settings``, loading it on first use (thread-safe).

    ``text=False`` (how ``embed_frames`` asks) is content with the image
    tower: a process that only embeds frames never holds the text tower. A
    later ``text=True`` call in that process reloads the whole model once.
    Raises :class:`ClipUnavailableError` when CLIP is disabled, the model
    cannot be loaded (message starts "Model load failed: "), or too many
    forward passes hung.
    """
    if not settings.clip_enabled:
        raise ClipUnavailableError(DISABLED_MESSAGE)
    key = model_key(settings)
    with _lock:
        if _state.model is not None and _state.key == key and (_state.model.has_text or not text):
            return _state.model
        if _state.hung_models >= MAX_HUNG_MODELS:
            raise ClipUnavailableError(
                f"Model unusable: {_state.hung_models} forward passes hung in this process; restart the worker"
            )
        if _state.failure and _state.failure[0] == key and time.monotonic() - _state.failure[2] < LOAD_RETRY_AFTER_S:
            raise ClipUnavailableError(_state.failure[1])
        if _state.model is not None:
            _state.model.close()
            _state.model = None
        try:
            model = load_clip(settings, text=text)
        except ClipUnavailableError as exc:
            _state.failure = (key, str(exc), time.monotonic())
            log.error("clip_model_load_failed", model=settings.clip_model_name, error=str(exc))
            raise
        _state.model, _state.key, _state.failure = model, key, None
        return model


def discard_hung_model(model: ClipModel) -> None:
    """Drop ``model`` after a forward pass hung on it; the next use loads a fresh one."""
    with _lock:
        if _state.model is not model:
            return
        _state.model = None
        _state.key = None
        _state.hung_models += 1
        hung = _state.hung_models
    log.error("clip_model_hung", model=model.model_name, device=model.device, hung_models=hung)


def reset_model() -> None:
    """Forget the model, remembered failures and hang count (tests; settings changed)."""
    with _lock:
        if _state.model is not None:
            _state.model.close()
        _state.model = None
        _state.key = None
        _state.failure = None
        _state.hung_models = 0


def loaded_model() -> ClipModel | None:
    """The model if one is loaded now, without loading one."""
    return _state.model


def configured_device(settings: Settings) -> str:
    """The device settings resolve to, for metadata when no model is loaded."""
    try:
        return resolve_device(settings.clip_device)
    except ClipUnavailableError:
        return settings.clip_device


_inherited: tuple[threading.Lock, _State] | None = None  # the parent's lock and state, in a forked child


def _after_fork_in_child() -> None:
    """Start the child with a fresh lock and no model, taking no lock and freeing nothing.

    Another thread may have held ``_lock`` or been loading a model at the
    fork. The parent's objects are kept, not released: releasing a model
    runs its library's destructors, which may wait on locks that no thread
    of the child will ever release.
    """
    global _lock, _state, _inherited
    _inherited = (_lock, _state)
    _lock = threading.Lock()
    _state = _State()


os.register_at_fork(after_in_child=_after_fork_in_child)
