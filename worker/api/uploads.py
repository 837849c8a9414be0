"""Request bodies to private files, streamed with a size cap (never read whole into memory).

Uploaded videos land in ``VIDX_DATA_DIR/uploads/<owner>/<random>/<name>`` (directories
mode 0700). With VIDX_STORAGE_URL they then move to the bucket
(``pipeline.storage.uploads``) and workers need no shared disk; without it workers
read them from there, so API and workers must share VIDX_DATA_DIR.
Query images go to ``VIDX_DATA_DIR/tmp`` and are removed after the search.
The client's file name is reduced to safe characters and only ever used as a last path part.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from uuid import UUID

from fastapi import Request

from pipeline.core.config import Settings
from worker.api.errors import ApiError

MAX_NAME_CHARS = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(raw: str | None, default: str = "upload") -> str:
    """The last part of a client-given name, in ``[A-Za-z0-9._-]``, no leading dot, bounded."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = _UNSAFE.sub("_", name).lstrip("._-")[:MAX_NAME_CHARS]
    return name or default


def uploads_root(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def new_upload_dir(settings: Settings, owner_id: UUID) -> Path:
    """A fresh directory of this owner's for one upload."""
    root = private_dir(uploads_root(settings))
    return private_dir(root / str(owner_id) / uuid.uuid4().hex)


def temp_dir(settings: Settings) -> Path:
    return private_dir(settings.data_dir / "tmp")


async def save_body(request: Request, dest: Path, *, max_bytes: int, what: str) -> int:
    """Stream the request body into ``dest``; 413 past ``max_bytes``, 422 when empty. Removes ``dest`` on failure."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"{what} too large", f"the limit is {max_bytes // (1024 * 1024)} MB")
    written = 0
    try:
        with dest.open("wb") as out:
            async for chunk in request.stream():
                written += len(chunk)
                if written > max_bytes:
                    raise ApiError(413, f"{what} too large", f"the limit is {max_bytes // (1024 * 1024)} MB")
                out.write(chunk)
        if written == 0:
            raise ApiError(422, f"empty {what}", "send the file's bytes as the request body")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return written


def discard(path: Path) -> None:
    """Remove an upload's directory (or a temp file) after a refusal."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
