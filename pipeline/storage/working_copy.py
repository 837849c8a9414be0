"""A local working copy of one published version, for tools that work on files (``vidx reembed``).

For a local ``frame_path`` it is the version directory itself. For an
``s3://`` one the version's objects are downloaded to a temporary directory;
when the tool rewrote ``sidecar.json`` it is uploaded back as one PUT, which
S3 makes atomic per object (readers see the old or the new sidecar).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.locations import S3Location, is_object_url, split_object_url

if TYPE_CHECKING:
    from pipeline.core.config import Settings

SIDECAR_NAME = "sidecar.json"


@contextmanager
def version_copy(frame_path: str, settings: Settings) -> Iterator[Path]:
    """A directory holding the files of the version ``frame_path`` points into."""
    if not is_object_url(frame_path):
        yield Path(frame_path).parent
        return
    from pipeline.storage import in_store
    from pipeline.storage.s3 import S3Store

    if not in_store(frame_path, settings):
        raise FileNotFoundError(f"frame outside the configured store: {frame_path}")
    bucket, key = split_object_url(frame_path)
    prefix = key.rsplit("/", 1)[0] + "/"
    store = S3Store(S3Location(bucket))
    settings.sidecar_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".copy-", dir=settings.sidecar_dir) as tmp:
        directory = Path(tmp)
        for object_key in store.list(prefix):
            name = object_key[len(prefix):]
            if name and "/" not in name:
                (directory / name).write_bytes(store.get(object_key))
        sidecar = directory / SIDECAR_NAME
        before = sidecar.read_bytes() if sidecar.exists() else None
        yield directory
        after = sidecar.read_bytes() if sidecar.exists() else None
        if after is not None and after != before:
            store.put(prefix + SIDECAR_NAME, after, "application/json")
