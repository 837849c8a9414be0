"""Where a video comes from: a local path, an http(s) URL or an uploaded object, fetched to a temp file.

Workers only ever index local files, so a URL is downloaded first
(pipeline.intake.fetch: checked addresses only, redirects re-checked, a size
cap and a total deadline), into a private temporary directory that is
removed when the job is over (success or not). Directories left by a worker
that was killed mid-download are swept by the next download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError
from pipeline.core.locations import is_object_url
from pipeline.core.log import get_logger
from pipeline.core.redaction import redact_url
from pipeline.intake.fetch import URL_SCHEMES, FetchPolicy, fetch_to_file
from pipeline.intake.netguard import Resolver, check_literal
from pipeline.storage import open_storage
from pipeline.storage.uploads import upload_name

log = get_logger(__name__)

_TMP_PREFIX = "vidx-download-"
# A download directory this old is abandoned whatever its process (pids get reused).
_ABANDONED_AFTER_S = 24 * 3600.0


def is_url(source: str, *, supported_only: bool = True) -> bool:
    """True for http(s) URLs; everything else is treated as a local path. The one test for "is this a URL".

    ``supported_only=False``: any ``scheme://`` text (``ftp://``, ``file://``), so it can be refused as a
    URL with a clear reason instead of being looked up as a file.
    """
    if not supported_only:
        return "://" in str(source)
    return urlsplit(str(source)).scheme.lower() in URL_SCHEMES


def check_url(url: str, settings: Settings) -> str:
    """Refuse what is visible without any network traffic: the scheme, a non-public IP literal.

    Returns the URL unchanged. ``vidx enqueue`` calls it so such a URL is
    refused at once (exit 2, nothing enqueued); the worker re-checks every
    address it resolves anyway.
    """
    label = redact_url(url)
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        # RFC 3986 has no raw spaces or control characters (NUL cannot even be stored); encode them as %XX
        raise BadInputError(f"{label!r}: a URL cannot contain spaces or control characters (percent-encode them)")
    if not is_url(url):
        raise BadInputError(f"{label}: unsupported URL scheme (use http:// or https://)")
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        raise BadInputError(f"{label}: URL has no host")
    check_literal(host, allow_private=settings.allow_private_urls, label=label)
    return url
def check_local_file(path: Path) -> Path:
    """Refuse a local path that cannot be a video (missing, directory, empty, unreadable)."""
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory, not a video file")
    if not path.is_file():
        raise BadInputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise BadInputError(f"{path}: permission denied")
    return path


@contextmanager
def open_source(
    source: str, settings: Settings, *, resolver: Resolver | None = None, owner_id: UUID | None = None
) -> Iterator[Path]:
    """Yield a local file for ``source``; a downloaded copy is deleted on exit.

    ``source`` is a local path, an http(s) URL, or an ``s3://`` URL of an
    uploaded video in the configured bucket (``VideoStorage.fetch_upload``:
    only ``owner_id``'s own uploads open). Raises :class:`BadInputError` for
    a missing/unusable path, a refused, unreachable or failing URL, a download
    over the size cap or deadline, or an object that is not the owner's upload.
    ``resolver`` replaces the system resolver (tests).
    """
    fetch: Callable[[Path], Path]
    if is_object_url(source):
        label = f"upload:{upload_name(source)}"
        fetch = partial(open_storage(settings).fetch_upload, source, owner_id=owner_id)
    elif is_url(source):
        check_url(source, settings)
        label = redact_url(source)
        fetch = partial(download, source, settings=settings, resolver=resolver)
    else:
        if is_url(source, supported_only=False):
            raise BadInputError(f"{redact_url(source)}: unsupported URL scheme (use http:// or https://)")
        yield check_local_file(Path(source).expanduser())
        return
    sweep_abandoned_downloads()
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-"))  # mode 0700
    try:
        path = fetch(tmp_dir)
        try:
            yield path
        except BadInputError as exc:
            # the tenant knows the URL or upload, not the worker's temporary file: name the input they gave
            message = str(exc).replace(str(path), label)
            if message == str(exc):
                raise
            raise BadInputError(message) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def download(url: str, dest_dir: Path, *, settings: Settings, resolver: Resolver | None = None) -> Path:
    """Fetch ``url`` into ``dest_dir`` under the settings' cap, deadline and address policy."""
    suffix = Path(urlsplit(url).path).suffix[:16]
    dest = dest_dir / f"source{suffix}"
    policy = FetchPolicy(
        max_bytes=settings.download_max_mb * 1024 * 1024,
        deadline_s=settings.download_deadline_s,
        allow_private=settings.allow_private_urls,
        resolver=resolver,
    )
    written = fetch_to_file(url, dest, policy)
    if written == 0:
        raise BadInputError(f"{redact_url(url)}: downloaded file is empty (0 bytes)")
    log.info("source_downloaded", url=redact_url(url), bytes=written)
    return dest


def sweep_abandoned_downloads(tmp_root: Path | None = None) -> list[Path]:
    """Remove download directories whose process is gone (a killed worker) or that are a day old."""
    root = Path(tmp_root or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.glob(f"{_TMP_PREFIX}*"))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        pid_text = entry.name[len(_TMP_PREFIX):].split("-", 1)[0]
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not entry.is_dir() or info.st_uid != os.getuid():
            continue
        alive = pid_text.isdigit() and _process_alive(int(pid_text))
        if alive and now - info.st_mtime < _ABANDONED_AFTER_S:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        log.info("abandoned_download_removed", path=str(entry))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
