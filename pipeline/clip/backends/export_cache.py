"""Where an exported image tower is kept, under a key that changes whenever its inputs change.

Beside the weights (``<checkpoint dir>/.vidx-exports/<key>/``) when that
directory is writable, else under ``CLIP_CACHE_DIR/exports/`` (a read-only
weights volume, or weights named by a pretrained tag). The key hashes the
weights' checksum (or the tag), the model name, the pretrained tag (it
selects the activation), the torch and runtime versions and this code's
export format: new weights or an upgrade mean a new export, never a stale one.

Two workers starting at once each export into a private temporary
directory and publish it with one atomic ``rename``; the loser discards its
copy and uses the winner's, so a reader never sees a half-written export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from pipeline.clip.identity import weights_checksum  # one home: memoised per file version
from pipeline.core.config import Settings
from pipeline.core.log import get_logger

log = get_logger(__name__)

EXPORT_FORMAT = 3  # 3: the dynamo exporter, opset 18. Bump when the export itself changes (opset, layout, checks)


def export_key(settings: Settings, backend_version: str) -> str:
    """A short hash naming one export: weights, model, tag, torch and runtime versions, export format."""
    weights = weights_checksum(Path(settings.clip_checkpoint)) if settings.clip_checkpoint else None
    parts = {
        "weights_sha256": weights, "model": settings.clip_model_name, "pretrained": settings.clip_pretrained,
        "torch": torch.__version__, "runtime": backend_version, "format": EXPORT_FORMAT,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def export_roots(settings: Settings) -> list[Path]:
    """Candidate homes for exports, preferred first."""
    roots = []
    if settings.clip_checkpoint is not None:
        roots.append(Path(settings.clip_checkpoint).resolve().parent / ".vidx-exports")
    roots.append(Path(settings.clip_cache_dir) / "exports")
    return roots


def cached_export(settings: Settings, key: str, make: Callable[[Path], None]) -> Path:
    """The directory holding export ``key``, made by ``make(tmp_dir)`` when no root has it yet.

    Raises OSError when no root is writable, and whatever ``make`` raises.
    """
    roots = export_roots(settings)
    for root in roots:
        if (root / key).is_dir():
            return root / key
    errors = []
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        except OSError as exc:  # read-only weights directory: try the next root
            errors.append(f"{root}: {exc}")
            continue
        try:
            make(tmp)
            os.rename(tmp, root / key)  # atomic; fails if another process published first
        except OSError:
            if not (root / key).is_dir():
                raise
            log.info("clip_export_published_by_another_process", key=key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return root / key
    raise OSError("no writable directory for the CLIP export: " + "; ".join(errors))
