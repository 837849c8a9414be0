"""Zero-shot labels: the vocabulary embedded once per model, then one matrix product per scene.

The text side (labels x prompt templates, averaged; the description slots'
phrases) is computed once per model and vocabulary in a process, and kept on
disk in ``CLIP_CACHE_DIR/vidx-text/`` keyed by the model identity and the
vocabulary's digest (written atomically), so a worker normally never loads
the text tower at all. When it must compute it, it loads a temporary
whole model, encodes, and drops it: the per-process model of a worker stays
image-only. Probabilities are a softmax over the whole vocabulary with the
model's own logit scale, as in CLIP's zero-shot classifier.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.clip.errors import ClipUnavailableError, InferenceTimeout
from pipeline.clip.identity import model_identity
from pipeline.clip.memory import release_free_memory
from pipeline.clip.vocabulary import Vocabulary, load_vocabulary
from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.core.scene_schema import SCORE_DIGITS

log = get_logger(__name__)

TEXT_BATCH = 256
DEFAULT_LOGIT_SCALE = 100.0  # CLIP's trained value (exp of the clamp limit); used if a model has none
CACHE_SUBDIR = "vidx-text"

_lock = threading.Lock()
_banks: dict[tuple[str, str], TextBank] = {}


@dataclass(frozen=True)
class TextBank:
    """A vocabulary's unit text embeddings for one model (rows L2-normalised, float32)."""

    labels: tuple[str, ...]
    label_matrix: np.ndarray  # len(labels) x d
    slots: tuple[tuple[str, tuple[str, ...], np.ndarray], ...]  # (slot name, phrases, len(phrases) x d)
    logit_scale: float


def text_bank(settings: Settings, vocabulary: Vocabulary | None = None) -> TextBank:
    """The configured vocabulary embedded by the configured model (memory, then disk, then computed).

    Raises :class:`~pipeline.clip.errors.ClipUnavailableError` when the model cannot be used.
    """
    vocabulary = vocabulary or load_vocabulary(settings.labels_file)
    key = (model_identity(settings), vocabulary.digest)
    with _lock:  # one computation per process and key; other threads wait for it
        bank = _banks.get(key)
        if bank is None:
            path = _cache_path(settings, key)
            bank = _read_cache(path, vocabulary)
            if bank is None:
                with _machine_lock(path):  # worker children of one machine compute it once, not each
                    bank = _read_cache(path, vocabulary)
                    if bank is None:
                        bank = _compute(vocabulary, settings)
                        _write_cache(path, bank)
            _banks[key] = bank
        return bank


def forget_text_banks() -> None:
    """Drop the in-process banks (tests)."""
    with _lock:
        _banks.clear()


def top_labels(vector: Sequence[float] | np.ndarray, bank: TextBank, k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable labels, ``[{"label", "score"}]`` descending (softmax over the whole vocabulary)."""
    if k <= 0 or not bank.labels:
        return []
    probabilities = softmax(bank.logit_scale * (bank.label_matrix @ unit(vector)))
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": bank.labels[i], "score": round(float(probabilities[i]), SCORE_DIGITS)} for i in order]


def unit(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - float(np.max(logits)))
    return shifted / shifted.sum()


# --- computing the bank --------------------------------------------------------


def _compute(vocabulary: Vocabulary, settings: Settings) -> TextBank:
    from pipeline.clip.loader import load_clip  # torch: only when the text bank is not cached

    started = time.perf_counter()
    model = load_clip(settings, text=True)  # temporary: the process's own model stays image-only
    try:
        texts = [template.format(label) for label in vocabulary.labels for template in vocabulary.templates]
        per_template = _encode(model, texts, settings).reshape(len(vocabulary.labels), len(vocabulary.templates), -1)
        label_matrix = _normalise_rows(per_template.mean(axis=1))
        slots = tuple(
            (name, phrases, _normalise_rows(_encode(model, list(phrases), settings)))
            for name, phrases in vocabulary.slots
        )
        scale = getattr(model.model, "logit_scale", None)
        logit_scale = float(scale.exp().item()) if scale is not None else DEFAULT_LOGIT_SCALE
    finally:
        model.close()
        del model
        release_free_memory()
    log.info(
        "clip_text_bank_computed", labels=len(vocabulary.labels), texts=len(texts),
        ms=round((time.perf_counter() - started) * 1000.0, 1),
    )
    return TextBank(vocabulary.labels, label_matrix, slots, logit_scale)


def _encode(model: Any, texts: list[str], settings: Settings) -> np.ndarray:
    chunks = []
    for start in range(0, len(texts), TEXT_BATCH):
        batch = texts[start : start + TEXT_BATCH]
        try:
            features, _, _ = model.infer("texts", model.tokenizer(batch), settings.clip_timeout_s * len(batch))
        except InferenceTimeout as exc:
            raise ClipUnavailableError(f"Vocabulary encoding timed out after {exc.timeout_s:g}s") from exc
        chunks.append(np.asarray(features, dtype=np.float32))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


# --- the disk cache ----------------------------------------------------------------


def _cache_path(settings: Settings, key: tuple[str, str]) -> Path:
    name = hashlib.sha256("\n".join(key).encode("utf-8")).hexdigest()[:32]
    return Path(settings.clip_cache_dir) / CACHE_SUBDIR / f"{name}.npz"


@contextlib.contextmanager
def _machine_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` beside the cache file; no lock (each process computes) where it cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a")
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def _read_cache(path: Path, vocabulary: Vocabulary) -> TextBank | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if tuple(str(x) for x in data["labels"]) != vocabulary.labels:
                return None
            slots = tuple(
                (name, phrases, np.asarray(data[f"slot_{name}"], dtype=np.float32))
                for name, phrases in vocabulary.slots
            )
            return TextBank(
                vocabulary.labels, np.asarray(data["label_matrix"], dtype=np.float32), slots,
                float(data["logit_scale"]),
            )
    except (OSError, KeyError, ValueError):
        return None


def _write_cache(path: Path, bank: TextBank) -> None:
    """Temp file in the same directory, then rename: concurrent workers never read half a file."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {f"slot_{name}": matrix for name, _, matrix in bank.slots}
        arrays.update(labels=np.array(bank.labels, dtype=str), label_matrix=bank.label_matrix,
                      logit_scale=np.float64(bank.logit_scale))
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache dir: the in-process bank still serves
        log.warning("clip_text_bank_not_cached", path=str(path), error=str(exc)[:200])
        tmp.unlink(missing_ok=True)
