"""``vidx enqueue``, ``vidx worker``, ``vidx status``, ``vidx health`` (queue side)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click

if TYPE_CHECKING:
    import psycopg

from pipeline.core.config import Settings
from pipeline.core.errors import first_line
from worker.cli.common import EXIT_FAILURE, EXIT_OK, get_settings, handle_errors, owner_option, print_json
from worker.enqueue import enqueue_sources, safe_url, source_label


def _connect(settings: Settings) -> psycopg.Connection:
    from pipeline import store

    return store.connect(settings)  # connection trouble arrives as TransientError


@click.command("enqueue")
@click.argument("sources", nargs=-1, required=True, metavar="PATH_OR_URL...")
@owner_option()
@click.option("--json", "as_json", is_flag=True, help="Print the video ids as JSON.")
@handle_errors
def enqueue_command(sources: tuple[str, ...], owner: UUID, as_json: bool) -> None:
    """Create a queued video row per source and send one indexing task each.

    Every local path is checked before anything is enqueued: one bad path
    (missing, a directory, empty) enqueues nothing and exits 2. URLs are
    fetched by the worker. Re-enqueueing a source re-indexes the same video.
    """
    settings = get_settings()
    # all checked before any is enqueued; label (redacted) -> what the worker fetches
    fetch_urls = {source_label(raw, settings): raw for raw in sources}
    rows = enqueue_sources(settings, fetch_urls, owner)
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            click.echo(f"{row['video_id']}  {row['source']}")


@click.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def worker_command(celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker on the vidx app; extra options go to ``celery worker``.

    Every worker also runs the reconciler on a timer (no beat service needed).
    With CLIP on a GPU (CLIP_DEVICE=cuda/auto) and no --concurrency given,
    it runs one child process per GPU, each pinned to its own GPU.
    """
    import os

    settings = get_settings()
    from worker.app import app, cuda_device_count

    args = list(celery_args)
    has_concurrency = any(a in ("-c", "--concurrency") or a.startswith("--concurrency=") for a in args)
    if settings.clip_enabled and settings.clip_device != "cpu" and "VIDX_WORKER_GPUS" not in os.environ:
        gpus = cuda_device_count()
        if gpus:
            os.environ["VIDX_WORKER_GPUS"] = ",".join(str(i) for i in range(gpus))
            if not has_concurrency:
                args += ["--concurrency", str(gpus)]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in args):
        args += ["--loglevel", settings.log_level.upper()]
    # --quiet: no banner on stdout, so every line the worker writes is a log record.
    app.worker_main(["--quiet", "worker", *args])


def _format_row(row: dict[str, Any]) -> str:
    progress = row.get("progress")
    pct = f"{100 * float(progress):5.1f}%" if progress is not None else "    -"
    scenes = row.get("scene_count")
    parts = [
        f"video {row.get('id') or row.get('video_id')}",
        f"{row.get('status', '?'):<7}",
        pct,
        f"attempts {row.get('attempts', 0)}",
        f"scenes {scenes if scenes is not None else '-'}",
        str(row.get("source", "")),
    ]
    line = "  ".join(parts)
    if row.get("error"):
        line += f"\n    error: {row['error']}"
    return line


@click.command("status")
@click.argument("video_ids", nargs=-1, type=click.UUID)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Videos listed without ids.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
@handle_errors
def status_command(video_ids: tuple[UUID, ...], limit: int, as_json: bool) -> None:
    """State, progress, attempts, error and scene counts of videos (latest first without ids).

    Exit 1 when a requested id is unknown.
    """
    from pipeline import store

    settings = get_settings()
    with _connect(settings) as conn:
        found = [store.get_video(conn, vid) for vid in video_ids] if video_ids else store.list_videos(conn, limit=limit)
    missing = [str(vid) for vid, row in zip(video_ids, found, strict=True) if row is None] if video_ids else []
    rows = [r for r in found if r is not None]
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            click.echo(_format_row(row))
    for vid in missing:
        click.echo(f"vidx: error: no video {vid}", err=True)
    sys.exit(EXIT_FAILURE if missing else EXIT_OK)


def check_database(settings: Settings) -> str:
    with _connect(settings) as conn:
        conn.execute("SELECT 1").fetchone()
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if version is None:
        raise RuntimeError("pgvector extension is not installed")
    return f"pgvector {version[0]}"


def check_broker(settings: Settings) -> str:
    """The broker's queue depth; on the single-machine defaults (no CELERY_BROKER_URL) a missing broker is fine."""
    import os

    if not os.environ.get("CELERY_BROKER_URL", "").strip():
        try:
            return _ping_broker(settings)
        except Exception:  # noqa: BLE001 - nothing configured it, nothing needs it
            return "not configured (CELERY_BROKER_URL unset: vidx index needs no broker; workers do)"
    return _ping_broker(settings)


def _ping_broker(settings: Settings) -> str:
    import redis

    from pipeline.core.config import broker_url

    client = redis.Redis.from_url(broker_url(settings), socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
        from worker.app import QUEUE

        return f"{safe_url(settings.celery_broker_url)}, {client.llen(QUEUE)} message(s) waiting"
    finally:
        client.close()


def check_model(settings: Settings) -> str:
    if not settings.clip_enabled:
        return "CLIP disabled (CLIP_ENABLED=false)"
    from pipeline.clip import get_model

    model = get_model(settings)
    dim = getattr(model, "embed_dim", None)
    return f"{settings.clip_model_name} loaded" + (f" ({dim}-d)" if dim else "")


def check_storage(settings: Settings) -> str:
    """The configured storage answers (a bucket: it accepts the credentials)."""
    from pipeline.storage import open_storage

    return open_storage(settings).probe()


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--skip-model",
    is_flag=True,
    help="Check only the database and the broker (cheap enough for a frequent container probe).",
)
@handle_errors
def health_command(as_json: bool, skip_model: bool) -> None:
    """Check the database, the broker, object storage (when configured) and the CLIP model; exit 1 if any fails."""
    settings = get_settings()
    results = []
    checks = [("database", check_database), ("broker", check_broker)]
    if settings.storage_url:
        checks.append(("storage", check_storage))
    if not skip_model:
        checks.append(("model", check_model))
    for name, check in checks:
        try:
            detail = check(settings)
            results.append({"check": name, "ok": True, "detail": detail})
        except Exception as exc:  # noqa: BLE001 - each failure is reported, not raised
            results.append({"check": name, "ok": False, "detail": first_line(exc)})
    if as_json:
        print_json(results)
    else:
        for r in results:
            click.echo(f"{r['check']:<9} {'ok' if r['ok'] else 'FAILING'}  {r['detail']}")
    sys.exit(EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILURE)


def register(cli: click.Group) -> None:
    """Attach this module's commands to the root group."""
    for command in (enqueue_command, worker_command, status_command, health_command):
        cli.add_command(command)
