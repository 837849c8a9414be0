"""Where a video comes from: a local path, or an http(s) URL fetched to a temp file.

Workers only ever index local files, so a URL is downloaded first, capped at
``settings.download_max_mb`` so a huge or endless response cannot fill the
disk, and the temporary copy is removed when the job is over (success or not).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config import Settings
from pipeline.errors import BadInputError
from pipeline.log import get_logger

log = get_logger(__name__)

URL_SCHEMES = ("http", "https")
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def is_url(source: str) -> bool:
    """True for http(s) URLs; everything else is treated as a local path."""
    return urlsplit(str(source)).scheme.lower() in URL_SCHEMES


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


DOWNLOAD_PREFIX = "vidx-download-"


def sweep_downloads(older_than_s: float) -> list[Path]:
    """Remove download directories a killed job left in the temp directory (older than any live job)."""
    import time

    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{DOWNLOAD_PREFIX}*"):
        try:
            if time.time() - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    return removed


@contextmanager
def open_source(source: str, settings: Settings) -> Iterator[Path]:
    """Yield a local file for ``source``; a downloaded copy is deleted on exit.

    Raises :class:`BadInputError` for a missing/unusable path, an unreachable
    or failing URL, or a download over the size cap.
    """
    if not is_url(source):
        yield check_local_file(Path(source).expanduser())
        return
    tmp_dir = Path(tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX))
    try:
        yield download(source, tmp_dir, max_bytes=settings.download_max_mb * 1024 * 1024)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def download(url: str, dest_dir: Path, *, max_bytes: int, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Stream ``url`` into ``dest_dir``; refuse it past ``max_bytes``."""
    suffix = Path(urlsplit(url).path).suffix[:16]
    dest = dest_dir / f"source{suffix}"
    request = urllib.request.Request(url, headers={"User-Agent": "vidx"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise BadInputError(f"{url}: {int(declared)} bytes is over the download cap of {max_bytes} bytes")
            written = 0
            with dest.open("wb") as out:
                while chunk := response.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise BadInputError(f"{url}: download is over the cap of {max_bytes} bytes")
                    out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise BadInputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise BadInputError(f"{url}: unreachable ({exc.reason})") from None
    except OSError as exc:  # timeouts, resets mid-body, local disk errors
        raise BadInputError(f"{url}: download failed ({exc})") from None
    if written == 0:
        raise BadInputError(f"{url}: downloaded file is empty (0 bytes)")
    log.info("source_downloaded", url=url, bytes=written)
    return dest
