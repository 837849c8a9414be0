"""``vidx enqueue``, ``vidx worker``, ``vidx status``, ``vidx health`` (queue side)."""

from __future__ import annotations

import sys
from typing import Any
from uuid import UUID

import click

from pipeline import store
from worker.cli.common import EXIT_FAILURE, EXIT_OK, get_settings, handle_errors, owner_option, print_json
from worker.enqueue import enqueue_sources, source_label
from worker.health import health_report


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
    settings = get_settings()
    from worker.app import app, claim_gpus  # celery: worker.app builds the Celery app on import; only this command runs it

    args = list(celery_args)
    has_concurrency = any(a in ("-c", "--concurrency") or a.startswith("--concurrency=") for a in args)
    gpus = claim_gpus()
    if gpus and not has_concurrency:
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
    settings = get_settings()
    with store.connect(settings) as conn:  # connection trouble arrives as TransientError
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


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--skip-model",
    is_flag=True,
    help="Check all but the CLIP model (cheap enough for a frequent container probe).",
)
@handle_errors
def health_command(as_json: bool, skip_model: bool) -> None:
    """Check the database, the broker, the storage and the CLIP model; exit 1 if any fails.

    The same report as ``/v1/health`` (worker.health), with the operator's details.
    """
    report = health_report(get_settings(), model=not skip_model)
    if as_json:
        print_json([{"check": c.name, "ok": c.ok, "status": c.status.value, "detail": c.detail} for c in report])
    else:
        for c in report:
            click.echo(f"{c.name:<9} {'ok' if c.ok else 'FAILING'}  {c.detail}")
    sys.exit(EXIT_OK if all(c.ok for c in report) else EXIT_FAILURE)
