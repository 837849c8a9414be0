"""Where frames, sidecars and uploaded sources are stored: one contract, one backend per kind of storage.

:class:`~pipeline.storage.contract.VideoStorage` says what a backend does
(stage, publish, make current, read, sweep, keep uploads, probe);
:func:`open_storage` is the one place that picks the backend from the
settings. The indexer, ``vidx sheet``, ``vidx reembed``, the workers' sweeps
and the HTTP API call the contract and never ask which backend they got.
Backends: ``local`` (a directory, versions + ``current`` symlink) and
``bucket`` (S3-compatible object storage, versions + ``current.json``).
"""

from __future__ import annotations

from pipeline.core.config import Settings
from pipeline.core.locations import parse_s3_url
from pipeline.storage.bucket import S3Storage
from pipeline.storage.contract import Staging, VideoStorage
from pipeline.storage.local import LocalStorage

__all__ = ["Staging", "VideoStorage", "open_storage"]


def open_storage(settings: Settings) -> VideoStorage:
    """The configured backend: ``VIDX_STORAGE_URL``'s bucket (``VIDX_SIDECAR_DIR`` its local scratch),
    else the local directory ``VIDX_SIDECAR_DIR``. Cheap: nothing is contacted until first use."""
    if settings.storage_url:
        return S3Storage(parse_s3_url(settings.storage_url), scratch=settings.sidecar_dir)
    return LocalStorage(settings.sidecar_dir)
