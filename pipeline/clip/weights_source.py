"""Can the CLIP_PRETRAINED weights be had? Answered in seconds, once per process.

Without this, an offline machine spends about a minute in the hub client's
download retries on every CLI call, then prints a cut-off network error that
never mentions CLIP_CHECKPOINT. Here: weights already in CLIP_CACHE_DIR pass
at once; otherwise one connection attempt to the download host with a short
timeout decides, and a "no" is remembered for the life of the process.
The loader asks right before building the model (open_clip is imported then anyway).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import constants

from pipeline.clip.errors import MODEL_LOAD_PREFIX, ClipUnavailableError
from pipeline.core.config import Settings

CONNECT_TIMEOUT_S = 3.0
_lock = threading.Lock()
_unreachable: dict[str, str] = {}  # download host -> the reason it was refused (process lifetime)


def check_weights_available(settings: Settings) -> None:
    """Return when the configured weights are local or downloadable; else raise one clear error.

    Raises :class:`ClipUnavailableError` ("Model load failed: ...") naming what to
    set: CLIP_CHECKPOINT, or a pre-filled CLIP_CACHE_DIR.
    """
    if settings.clip_checkpoint is not None:
        return
    source = _download_source(settings)
    if source is None:  # not an open_clip tag we know how to fetch: open_clip will say why
        return
    cache_hint, url = source
    if _is_cached(settings.clip_cache_dir, cache_hint):
        return
    host, port = _host_port(url)
    with _lock:
        reason = _unreachable.get(f"{host}:{port}")
    if reason is None:
        reason = _try_connect(host, port)
        if reason is None:
            return
        with _lock:
            _unreachable[f"{host}:{port}"] = reason
    raise ClipUnavailableError(
        f"{MODEL_LOAD_PREFIX}the {settings.clip_model_name}/{settings.clip_pretrained} weights are not in "
        f"CLIP_CACHE_DIR={settings.clip_cache_dir} and {host} cannot be reached ({reason}); "
        f"set CLIP_CHECKPOINT=/path/to/weights.pt (works offline), or pre-fill CLIP_CACHE_DIR on a machine with network"
    )


def weights_available(settings: Settings) -> bool:
    """True when :func:`check_weights_available` would pass."""
    try:
        check_weights_available(settings)
    except ClipUnavailableError:
        return False
    return True


def _download_source(settings: Settings) -> tuple[str, str] | None:
    """(what the cache holds it as, the URL it is fetched from) for the configured tag."""
    import open_clip  # imports torch: only reached on the way to loading the model

    cfg = open_clip.get_pretrained_cfg(settings.clip_model_name, settings.clip_pretrained) or {}
    hub = str(cfg.get("hf_hub", "")).strip("/")
    if hub:
        repo = "/".join(hub.split("/")[:2])
        return "models--" + repo.replace("/", "--"), constants.ENDPOINT
    url = str(cfg.get("url", ""))
    if url:
        return os.path.basename(urlsplit(url).path), url
    return None


def _is_cached(cache_dir: Path, name: str) -> bool:
    entry = Path(cache_dir) / name
    if entry.is_file():
        return True
    snapshots = entry / "snapshots"
    return snapshots.is_dir() and any(
        p.suffix in (".bin", ".safetensors", ".pt") for p in snapshots.rglob("*") if p.is_file()
    )


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (80 if parts.scheme == "http" else 443)


def _try_connect(host: str, port: int) -> str | None:
    """None when a TCP connection opens within the timeout; else the reason, in a few words."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except socket.gaierror:
        return "its name does not resolve"
    except TimeoutError:
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None
