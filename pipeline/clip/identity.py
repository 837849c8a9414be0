"""Which model made an embedding, as one comparable string.

Vectors of two models live in unrelated spaces: a query must only meet
embeddings of its own model. The identity is ``<model>/<pretrained tag>`` for
hub weights and adds ``@sha256:<16 hex>`` of the file for a local checkpoint
(CLIP_CHECKPOINT), so two different files with the same name never pass for
one model. Torch-free: the CLI and the search path use it without the model.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from pipeline.core.config import Settings

_CHUNK = 1 << 20
_DIGEST_CHARS = 16
_lock = threading.Lock()
_digests: dict[tuple[str, int, int], str] = {}


def model_identity(settings: Settings) -> str:
    """The identity stored in ``scenes.embedding_model`` for embeddings made with ``settings``."""
    base = f"{settings.clip_model_name}/{settings.clip_pretrained}"
    if settings.clip_checkpoint is None:
        return base
    return f"{base}@sha256:{weights_checksum(settings.clip_checkpoint)[:_DIGEST_CHARS]}"


def weights_checksum(path: Path) -> str:
    """SHA-256 (hex) of a weights file, computed once per process and file version.

    Hashing ViT-B-32's 600 MB takes about a second; the digest is also kept in
    ``<weights>.sha256`` (keyed by size and mtime) so the next process skips it,
    when the weights' directory is writable.
    """
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _digests:
            return _digests[key]
    digest = _read_cached(path, stat.st_size, stat.st_mtime_ns) or _hash_file(path)
    _write_cached(path, stat.st_size, stat.st_mtime_ns, digest)
    with _lock:
        _digests[key] = digest
    return digest


def _cache_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_cached(path: Path, size: int, mtime_ns: int) -> str | None:
    try:
        text = _cache_file(path).read_text().split()
    except OSError:
        return None
    if len(text) == 3 and text[1] == str(size) and text[2] == str(mtime_ns) and len(text[0]) == 64:
        return text[0]
    return None


def _write_cached(path: Path, size: int, mtime_ns: int, digest: str) -> None:
    target = _cache_file(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest} {size} {mtime_ns}\n")
        os.replace(tmp, target)  # atomic: concurrent workers never read half a line
    except OSError:  # read-only weights directory: the in-process cache still holds
        tmp.unlink(missing_ok=True)


def _hash_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()
