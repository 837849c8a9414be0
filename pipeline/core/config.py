"""Every environment variable vidx reads, parsed and validated in one place.

Settings are read once at start-up (``load_settings``) so that a bad value
fails fast, naming the variable and what it accepts, instead of surfacing
as an odd error in the middle of a job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.core.errors import ConfigError
from pipeline.core.locations import parse_s3_url
from pipeline.core.redaction import redact_connection_url

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, raw, "true or false (1/0, yes/no, on/off)")


def _number(kind: type, minimum: float | None = None, allow_zero: bool = True):
    def parse(name: str, raw: str):
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(name, raw, f"a{'n integer' if kind is int else ' number'}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(name, raw, "a finite number")
        if minimum is not None and value < minimum:
            raise ConfigError(name, raw, f"a number >= {minimum}")
        if not allow_zero and value == 0:
            raise ConfigError(name, raw, "a number > 0")
        return value

    return parse


def _choice(*choices: str):
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(name, raw, "one of " + ", ".join(choices))
        return value

    return parse


def _text(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError(name, raw, "a non-empty string")
    return value


def _path(name: str, raw: str) -> Path:
    return Path(_text(name, raw)).expanduser()


def _local_dir(name: str, raw: str) -> Path:
    """A local directory; a URL here is a mistake worth naming (object storage has its own variable)."""
    if "://" in raw:
        raise ConfigError(name, raw, "a local directory or an s3://bucket/prefix location (also VIDX_STORAGE_URL)")
    return _path(name, raw)


def _s3_url(name: str, raw: str) -> str:
    """``s3://bucket[/prefix]`` (issue 15); parsed where object locations are defined."""
    value = _text(name, raw)
    try:
        parse_s3_url(value)
    except ValueError as exc:
        raise ConfigError(name, value, f"s3://bucket/prefix ({exc})") from None
    return value.rstrip("/")


def _url(*schemes: str):
    def parse(name: str, raw: str) -> str:
        value = _text(name, raw)
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in schemes:
            # never echo a password back: a mistyped URL may still hold one
            raise ConfigError(
                name, redact_connection_url(raw), "a URL starting with " + " or ".join(s + "://" for s in schemes)
            )
        return value

    return parse


def _existing_file(name: str, raw: str) -> Path:
    path = _path(name, raw)
    if not path.is_file():
        raise ConfigError(name, raw, "the path of an existing weights file")
    return path


def _int_range(lowest: int, highest: int):
    def parse(name: str, raw: str) -> int:
        value = _number(int)(name, raw)
        if not lowest <= value <= highest:
            raise ConfigError(name, raw, f"an integer from {lowest} to {highest}")
        return value

    return parse


def _labels_file(name: str, raw: str) -> Path:
    """A readable UTF-8 file with at least one label (blank lines and ``#`` comments ignored)."""
    path = _path(name, raw)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(name, raw, "a readable UTF-8 text file with one label per line") from None
    if not any(line.strip() and not line.strip().startswith("#") for line in lines):
        raise ConfigError(name, raw, "a file with at least one label (one per line)")
    return path


def _env(name: str, parser: Callable[[str, str], Any], default: Any, doc: str) -> Any:
    """A dataclass field bound to one environment variable."""
    return field(default=default, metadata={"env": name, "parser": parser, "doc": doc})


# Longest countdown of a retried job, and slack: an unacknowledged message comes
# back (Redis visibility timeout) only after any legitimate run would have ended.
RETRY_BACKOFF_MAX_S = 300.0
REDELIVERY_SLACK_S = 60


def redelivery_after_s(settings: Settings) -> int:
    """The broker's visibility timeout: hard limit + longest retry countdown + slack."""
    return int(settings.task_time_limit_s + RETRY_BACKOFF_MAX_S + REDELIVERY_SLACK_S)


def recovery_bound_s(settings: Settings) -> float:
    """Worst time from a worker's death to its video being requeued, once a live worker runs the reconciler."""
    return settings.lease_s + settings.reconcile_interval_s


# The broker of the single-machine defaults, when CELERY_BROKER_URL is unset (DESIGN.md).
DEFAULT_BROKER_URL = "redis://localhost:6379/0"


def _gpu_list(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated GPU indices or UUIDs, as CUDA_VISIBLE_DEVICES takes them."""
    gpus = tuple(item.strip() for item in raw.split(","))
    if not all(gpus):
        raise ConfigError(name, raw, "comma-separated GPU indices, e.g. 0,1")
    return gpus


def _default_data_dir() -> Path:
    return Path.home() / ".vidx"


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build it with :func:`load_settings`."""

    # --- CLIP (names kept from the service vidx replaces) ---
    clip_enabled: bool = _env("CLIP_ENABLED", _parse_bool, True, "Embed best frames with CLIP.")
    clip_model_name: str = _env("CLIP_MODEL_NAME", _text, "ViT-B-32", "open_clip model architecture.")
    clip_pretrained: str = _env(
        "CLIP_PRETRAINED", _text, "openai", "open_clip pretrained tag; downloaded once into CLIP_CACHE_DIR."
    )
    clip_device: str = _env("CLIP_DEVICE", _choice("cpu", "cuda", "auto"), "cpu", "cpu, cuda or auto.")
    clip_normalize: bool = _env("CLIP_NORMALIZE", _parse_bool, True, "L2-normalise embeddings.")
    clip_timeout_s: float = _env(
        "CLIP_TIMEOUT_S", _number(float, 0, allow_zero=False), 2.0, "Per-scene embedding timeout in seconds."
    )
    clip_max_image_size: int = _env(
        "CLIP_MAX_IMAGE_SIZE", _number(int, 16), 224,
        "Shorter side a frame is capped to (at least the model input) before preprocessing.",
    )
    clip_cpu_threads: int | None = _env(
        "CLIP_CPU_THREADS", _number(int, 1), None, "torch CPU threads (unset: torch default)."
    )
    clip_cache_dir: Path = _env("CLIP_CACHE_DIR", _path, Path("/tmp/clip_cache"), "Where pretrained weights are cached.")
    clip_debug_log: bool = _env("CLIP_DEBUG_LOG", _parse_bool, False, "Log load time, per-scene time and norms.")
    clip_checkpoint: Path | None = _env(
        "CLIP_CHECKPOINT", _existing_file, None, "Local weights file (no network); overrides CLIP_PRETRAINED."
    )

    # --- end-to-end / CLIP backend (issue 13) ---
    clip_backend: str = _env(
        "CLIP_BACKEND", _choice("auto", "torch", "onnx", "openvino"), "auto",
        "Image-tower runtime: auto (ONNX Runtime on CPU when installed, else torch; torch on CUDA), "
        "torch, onnx or openvino. The export is made from the same weights at first use and cached.",
    )

    # --- storage and queue ---
    database_url: str | None = _env(
        "DATABASE_URL",
        _url("postgresql", "postgres"),
        None,
        "PostgreSQL with pgvector (unset: embedded server in VIDX_DATA_DIR).",
    )
    celery_broker_url: str | None = _env(
        "CELERY_BROKER_URL", _url("redis", "rediss"), None,
        f"Celery broker (Redis). Unset: {DEFAULT_BROKER_URL}, optional there (vidx index needs no broker; "
        "health reports a missing one as not configured).",
    )
    data_dir: Path = _env("VIDX_DATA_DIR", _path, None, "State directory (embedded database, default sidecars).")
    sidecar_dir: Path = _env(
        "VIDX_SIDECAR_DIR", _local_dir, None,
        "Where sidecars go (default VIDX_DATA_DIR/sidecars; with VIDX_STORAGE_URL: local staging only).",
    )

    # --- object storage (issue 15) ---
    storage_url: str | None = _env(
        "VIDX_STORAGE_URL", _s3_url, None,
        "s3://bucket/prefix: frames and sidecars in S3-compatible storage (endpoint, region and credentials "
        "from the AWS_* variables); unset: the local VIDX_SIDECAR_DIR.",
    )

    # --- scene detection and frame ranking ---
    min_scene_s: float = _env("VIDX_MIN_SCENE_S", _number(float, 0), 0.5, "Shortest scene in seconds.")
    max_scene_s: float = _env(
        "VIDX_MAX_SCENE_S", _number(float, 0), 0.0, "Split shots longer than this (0: never split)."
    )
    candidates_per_scene: int = _env(
        "VIDX_CANDIDATES_PER_SCENE", _number(int, 1), 5, "Candidate frames ranked per scene."
    )
    frame_height: int = _env(
        "VIDX_FRAME_HEIGHT", _number(int, 64), 360, "Height of analysed frames and best-frame JPEGs."
    )

    # --- scene understanding (issue 14) ---
    labels_top_k: int = _env(
        "VIDX_LABELS_TOP_K", _int_range(0, 50), 5,
        "Zero-shot labels kept per scene (0: no labels and no descriptions).",
    )
    labels_file: Path | None = _env(
        "VIDX_LABELS_FILE", _labels_file, None, "Label vocabulary, one label per line (default: built-in list)."
    )
    frames_per_scene: int = _env(
        "VIDX_FRAMES_PER_SCENE", _int_range(1, 5), 1,
        "Top-ranked frames per scene embedded and mean-pooled (1: the best frame only).",
    )

    # --- shot detection (issue 12) ---
    shot_reference_pass: bool = _env(
        "VIDX_SHOT_REFERENCE_PASS", _parse_bool, False,
        "Experimental: detect shots on reference frames only (B-frames skipped), then place each cut exactly.",
    )
    decode_processes: int = _env(
        "VIDX_DECODE_PROCESSES", _int_range(0, 64), 0,
        "ffmpeg processes decoding keyframe-aligned segments of one video at once in the reference pass "
        "(0: one per CPU this process may use, at most 4; 1: one decode).",
    )

    # --- input limits (bad input is refused, not attempted) ---
    max_duration_s: float = _env(
        "VIDX_MAX_DURATION_S", _number(float, 1), 6 * 3600.0, "Longest video accepted, in seconds."
    )
    max_dimension: int = _env("VIDX_MAX_DIMENSION", _number(int, 16), 8192, "Largest width or height accepted.")
    download_max_mb: int = _env("VIDX_DOWNLOAD_MAX_MB", _number(int, 1), 4096, "Size cap for URL downloads.")

    # --- workers ---
    max_attempts: int = _env("VIDX_MAX_ATTEMPTS", _number(int, 1), 3, "Attempts before a video is marked failed.")
    task_soft_time_limit_s: int = _env(
        "VIDX_TASK_SOFT_TIME_LIMIT_S", _number(int, 1), 3600, "Soft time limit per video."
    )
    task_time_limit_s: int = _env("VIDX_TASK_TIME_LIMIT_S", _number(int, 1), 3900, "Hard time limit per video.")
    worker_gpus: tuple[str, ...] | None = _env(
        "VIDX_WORKER_GPUS", _gpu_list, None,
        "GPUs of a `vidx worker`, one pool child pinned to each (unset with CLIP on CUDA: every visible GPU).",
    )
    stale_after_s: int = _env(
        "VIDX_STALE_AFTER_S", _number(int, 1), 900,
        "Republish videos left queued this long with no news (a lost message); running ones use leases.",
    )

    # --- reliability (issue 11) ---
    lease_s: int = _env(
        "VIDX_LEASE_S", _number(int, 2), 30,
        "A running job's lease; a job whose worker stopped renewing it this long is requeued.",
    )
    heartbeat_s: float = _env(
        "VIDX_HEARTBEAT_S", _number(float, 0, allow_zero=False), 10.0,
        "How often a running job renews its lease (at most VIDX_LEASE_S / 2).",
    )
    reconcile_interval_s: float = _env(
        "VIDX_RECONCILE_INTERVAL_S", _number(float, 0, allow_zero=False), 30.0,
        "How often every worker requeues videos whose lease expired.",
    )

    # --- security (issue 10) ---
    allow_private_urls: bool = _env(
        "VIDX_ALLOW_PRIVATE_URLS", _parse_bool, False,
        "Let URL sources resolve to loopback/private/link-local addresses (internal hosts; off by default).",
    )
    download_deadline_s: float = _env(
        "VIDX_DOWNLOAD_DEADLINE_S", _number(float, 1), 1800.0, "Total time allowed for one URL download, seconds."
    )
    max_frames: int = _env("VIDX_MAX_FRAMES", _number(int, 2), 2_000_000, "Most video frames a file may hold.")
    max_fps: float = _env("VIDX_MAX_FPS", _number(float, 1), 240.0, "Highest frame rate accepted (from the content).")
    ffmpeg_memory_mb: int = _env(
        "VIDX_FFMPEG_MEMORY_MB", _number(int, 64), 4096, "Address-space limit of each ffmpeg/ffprobe child, MB."
    )
    ffmpeg_cpu_s: int = _env(
        "VIDX_FFMPEG_CPU_S", _number(int, 1), 4 * 3600, "CPU-seconds limit of each ffmpeg/ffprobe child."
    )
    broker_password: str | None = field(  # a secret: never in repr()
        default=None, repr=False,
        metadata={"env": "VIDX_BROKER_PASSWORD", "parser": _text,
                  "doc": "Redis password (kept out of CELERY_BROKER_URL and of every message)."},
    )

    # --- HTTP API (issue 16) ---
    api_upload_max_mb: int = _env(
        "VIDX_API_UPLOAD_MAX_MB", _number(int, 1), 2048, "Largest video upload `vidx serve` accepts, in MB."
    )
    api_image_max_mb: int = _env(
        "VIDX_API_IMAGE_MAX_MB", _number(int, 1), 10, "Largest query image for search by image, in MB."
    )
    api_rate_per_minute: int = _env(
        "VIDX_API_RATE_PER_MINUTE", _number(int, 1), 600, "Requests per minute each API key may make (sustained)."
    )
    api_rate_burst: int = _env(
        "VIDX_API_RATE_BURST", _number(int, 1), 60, "Requests an API key may make at once above its rate."
    )
    api_db_pool_size: int = _env(
        "VIDX_API_DB_POOL_SIZE", _number(int, 1), 8, "Database connections `vidx serve` keeps open."
    )

    # --- logging ---
    log_format: str = _env("VIDX_LOG_FORMAT", _choice("auto", "json", "console"), "auto", "auto: console on a TTY.")
    log_level: str = _env(
        "VIDX_LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "Minimum log level."
    )

    def __post_init__(self) -> None:
        data_dir = self.data_dir or _default_data_dir()
        object.__setattr__(self, "data_dir", data_dir)
        if self.sidecar_dir is None:
            object.__setattr__(self, "sidecar_dir", data_dir / "sidecars")
        if self.task_time_limit_s <= self.task_soft_time_limit_s:
            raise ConfigError(
                "VIDX_TASK_TIME_LIMIT_S",
                str(self.task_time_limit_s),
                f"a value greater than VIDX_TASK_SOFT_TIME_LIMIT_S ({self.task_soft_time_limit_s})",
            )
        self._check_reliability()

    def _check_reliability(self) -> None:
        """Leases, heartbeats, the reconciler and the time limits only work in this order."""
        if self.heartbeat_s * 2 > self.lease_s:
            raise ConfigError(
                "VIDX_HEARTBEAT_S", str(self.heartbeat_s),
                f"at most half of VIDX_LEASE_S ({self.lease_s}), so one late renewal does not lose a live job",
            )
        if self.stale_after_s < max(self.lease_s, self.reconcile_interval_s):
            raise ConfigError(
                "VIDX_STALE_AFTER_S", str(self.stale_after_s),
                f"at least VIDX_LEASE_S ({self.lease_s}) and VIDX_RECONCILE_INTERVAL_S ({self.reconcile_interval_s})",
            )

    @property
    def broker_configured(self) -> bool:
        """CELERY_BROKER_URL is set: this deployment has a broker, and one that cannot be reached is a failure."""
        return self.celery_broker_url is not None

    def decode_workers(self) -> int:
        """Decoding processes for one video: ``VIDX_DECODE_PROCESSES``, or one per usable CPU (at most 4)."""
        if self.decode_processes:
            return self.decode_processes
        affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every core counts
        usable = len(affinity(0)) if affinity else (os.cpu_count() or 1)
        return max(1, min(4, usable))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (CLI flags, tests)."""
        return replace(self, **changes)


def _sidecar_location_alias(environ: Mapping[str, str]) -> Mapping[str, str]:
    """The contract lets ``VIDX_SIDECAR_DIR`` name an ``s3://`` location: read it as ``VIDX_STORAGE_URL``.

    Local staging then stays at the default (``VIDX_DATA_DIR/sidecars``). Two
    different locations in the two variables are a mistake worth naming.
    """
    sidecar = (environ.get("VIDX_SIDECAR_DIR") or "").strip()
    if not sidecar.lower().startswith("s3://"):
        return environ
    storage = (environ.get("VIDX_STORAGE_URL") or "").strip()
    if storage and storage.rstrip("/") != sidecar.rstrip("/"):
        raise ConfigError("VIDX_SIDECAR_DIR", sidecar, f"a local directory, or the same location as VIDX_STORAGE_URL ({storage})")
    aliased = {k: v for k, v in environ.items() if k != "VIDX_SIDECAR_DIR"}
    aliased["VIDX_STORAGE_URL"] = sidecar
    return aliased


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every vidx variable from ``environ`` (default: ``os.environ``).

    Empty values count as unset. Raises :class:`ConfigError` on the first
    invalid value, naming the variable.
    """
    environ = _sidecar_location_alias(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.metadata["env"]
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        values[f.name] = f.metadata["parser"](name, raw)
    return Settings(**values)


def describe_settings() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) rows, for docs and ``vidx --help``."""
    rows = []
    for f in fields(Settings):
        default = "" if f.default is None else str(f.default)
        rows.append((f.metadata["env"], default, f.metadata["doc"]))
    return rows


def broker_url(settings: Settings) -> str:
    """The one broker URL vidx connects with: workers, enqueue, the API and health alike.

    ``CELERY_BROKER_URL`` (or the default) with ``VIDX_BROKER_PASSWORD``, when
    set, as the Redis password. Security (issue 10): the password can live in
    its own variable (a secret store), so the configured URL never needs to hold it.
    """
    url = settings.celery_broker_url or DEFAULT_BROKER_URL
    if not settings.broker_password:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(settings.broker_password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
