"""``vidx show``, ``vidx sheet``, ``vidx reembed``: what vidx understood of a video, and moving it to a new model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import click

from pipeline import store
from pipeline.clip.identity import model_identity
from pipeline.core.errors import BadInputError
from pipeline.core.scene_schema import record_from_row, scene_json
from pipeline.reembed import reembed_video, videos_to_reembed
from pipeline.storage import open_storage
from pipeline.store.video_scenes import owned_video, video_owner, video_scenes
from worker.cli.common import EXIT_FAILURE, EXIT_OK, get_settings, handle_errors, print_json

_OWNER_HELP = "Owner (tenant) UUID: a video of another owner is not found. Default: the video's own owner."


def _resolve_owner(conn: Any, video_id: UUID, owner: UUID | None) -> UUID:
    """The owner to scope to: the one given, else (operator use) the video's own."""
    if owner is not None:
        return owner
    found = video_owner(conn, video_id)
    if found is None:
        raise BadInputError(f"no video {video_id}")
    return found


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(max(0.0, float(seconds)), 60)
    return f"{int(minutes)}:{secs:05.2f}"


def _scene_json(row: dict[str, Any]) -> dict[str, Any]:
    """The scene object of the sidecar (no vector) plus what the database adds: its id, file and model."""
    return {
        **scene_json(record_from_row(row), vectors=False),
        "scene_id": str(row["id"]),
        "frame_path": row.get("frame_path"),
        "embedded": bool(row.get("embedded")),
        "embedding_model": row.get("embedding_model"),
    }


def _row(scene: dict[str, Any]) -> str:
    """One line of the ``vidx show`` table."""
    best = scene["best_frame"] or {}
    quality = (best.get("quality") or {}).get("quality_score")
    if scene.get("labels"):
        labels = ", ".join(f"{item['label']} {item['score']:.2f}" for item in scene["labels"][:3])
    elif scene["embedded"]:
        labels = "-"
    else:
        labels = f"(no embedding: {scene['visual_clip_metadata'].get('error') or 'unknown'})"
    return (f"  {scene['index']:>4}  {scene['scene_id']:<36}  {_time(scene['start_s']):>8}  {_time(scene['end_s']):>8}"
            f"  {_time(best.get('time_s')):>8}  {'-' if quality is None else f'{quality:.3f}':>7}  {labels}")


@click.command("show")
@click.argument("video_id", type=click.UUID)
@click.option("--owner", type=click.UUID, default=None, help=_OWNER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the video and its scenes as JSON.")
@handle_errors
def show_command(video_id: UUID, owner: UUID | None, as_json: bool) -> None:
    """A video's scenes: ids, times, best-frame quality, embedding model, labels and description."""
    with store.connect(get_settings()) as conn:
        owner = _resolve_owner(conn, video_id, owner)
        video = owned_video(conn, video_id, owner)
        scenes = [_scene_json(s) for s in video_scenes(conn, video_id, owner)]
    if as_json:
        print_json({"video_id": str(video_id), "owner_id": str(video["owner_id"]), "source": video["source"],
                    "status": video["status"], "error": video["error"], "scenes": scenes})
        return
    embedded = sum(s["embedded"] for s in scenes)
    models = sorted({s["embedding_model"] for s in scenes if s["embedding_model"]})
    click.echo(f"{video['source']}\n  video {video_id}  owner {video['owner_id']}  {video['status']}  "
               f"{len(scenes)} scenes, {embedded} embedded ({', '.join(models) or 'no model'})")
    if video["error"]:
        click.echo(f"  error: {video['error']}")
    click.echo(f"  {'#':>4}  {'scene id':<36}  {'start':>8}  {'end':>8}  {'best@':>8}  {'quality':>7}  labels")
    for s in scenes:
        click.echo(_row(s))
        if s.get("description"):
            click.echo(f"  {'':>4}  {'':<36}  {'':>8}  {'':>8}  {'':>8}  {'':>7}  \"{s['description']}\"")


@click.command("sheet")
@click.argument("video_id", type=click.UUID)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG file to write (page 1, or --page N).")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True,
              help="Page to write when the video has more scenes than fit one sheet.")
@click.option("--sidecar", "to_sidecar", is_flag=True,
              help="Also write every page into the video's sidecar directory (contact_sheet.png).")
@click.option("--owner", type=click.UUID, default=None, help=_OWNER_HELP)
@handle_errors
def sheet_command(video_id: UUID, output: Path | None, page: int, to_sidecar: bool, owner: UUID | None) -> None:
    """A contact sheet of the video: one tile per scene (best frame, timecode, top label)."""
    from pipeline.frames.sheet import render_sheet, sheet_filename, sheet_pages, to_png, write_png_atomic  # PIL: vidx sheet only

    if output is None and not to_sidecar:
        raise click.UsageError("give -o FILE.png and/or --sidecar")
    settings = get_settings()
    storage = open_storage(settings)
    with store.connect(settings) as conn:
        owner = _resolve_owner(conn, video_id, owner)
        title, pages = sheet_pages(conn, video_id, owner_id=owner)
        frame_paths = [p for (p,) in conn.execute(
            "SELECT frame_path FROM scenes WHERE video_id = %s AND owner_id = %s AND frame_path IS NOT NULL",
            (video_id, owner)).fetchall()]
    if not 1 <= page <= len(pages):
        raise BadInputError(f"page {page} does not exist: the sheet of video {video_id} has {len(pages)} page(s)")

    def png(number: int) -> bytes:
        return to_png(render_sheet(pages[number - 1], title=title, page=number, pages=len(pages), storage=storage))

    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_png_atomic(output, png(page))
        note = f" (page {page} of {len(pages)}; --page N for the others)" if len(pages) > 1 else ""
        click.echo(f"{output}{note}")
    if to_sidecar:
        missing = BadInputError(f"video {video_id} has no sidecar directory here")
        if len({p.rsplit("/", 1)[0] for p in frame_paths}) != 1:  # the frames of one published version
            raise missing
        for number in range(1, len(pages) + 1):
            try:
                where = storage.write_beside(frame_paths[0], sheet_filename(number, len(pages)), png(number))
            except FileNotFoundError:
                raise missing from None
            click.echo(where)


@click.command("reembed")
@click.option("--owner", type=click.UUID, default=None, help="Only this owner's videos.")
@click.option("--video", "video_id", type=click.UUID, default=None, help="Only this video.")
@click.option("--all", "all_owners", is_flag=True, help="Every owner's videos.")
@click.option("--local", is_flag=True, help="Run in this process even when CELERY_BROKER_URL is set.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@handle_errors
def reembed_command(owner: UUID | None, video_id: UUID | None, all_owners: bool, local: bool, as_json: bool) -> None:
    """Move stored best frames to the configured CLIP model, without decoding again.

    Redoes every scene whose embedding was not made by the configured model
    (another model, CLIP off at indexing, a failed embedding), with labels and
    descriptions; one transaction per video, so search never sees a video half
    on one model. A second run finds nothing to do. With CELERY_BROKER_URL set,
    one Celery task per video (vidx worker runs them); else in this process.
    """
    if not (owner or video_id or all_owners):
        raise click.UsageError("give --video ID, --owner UUID or --all")
    if all_owners and (owner or video_id):
        raise click.UsageError("--all cannot be combined with --owner or --video")
    settings = get_settings()
    if not settings.clip_enabled:
        raise BadInputError("CLIP_ENABLED=false: there is no model to re-embed with")
    identity = model_identity(settings)
    with store.connect(settings) as conn:
        if video_id is not None and owner is not None:
            owned_video(conn, video_id, owner)  # another owner's video: not found
        todo = videos_to_reembed(conn, identity, owner_id=owner, video_id=video_id)
    queued = settings.broker_configured and not local
    outcome: dict[str, Any] = {"model": identity, "videos": len(todo), "mode": "celery" if queued else "local"}
    if queued:
        from worker.tasks import send_reembed_task  # celery: importing worker.tasks builds the Celery app

        outcome["task_ids"] = [send_reembed_task(video) for video in todo]
        if not as_json:
            click.echo(f"{len(todo)} video(s) queued for re-embedding with {identity}")
    else:
        results = []
        with click.progressbar(todo, label="re-embedding", file=sys.stderr,
                               show_pos=True) if sys.stderr.isatty() and todo else _Plain(todo) as videos:
            for video in videos:
                results.append(reembed_video(video, settings))
        outcome["scenes"] = sum(r.scenes for r in results)
        outcome["embedded"] = sum(r.embedded for r in results)
        outcome["skipped"] = sum(1 for r in results if r.skipped)
        if not as_json:
            click.echo(f"{len(todo)} video(s), {outcome['scenes']} scene(s) re-embedded with {identity}: "
                       f"{outcome['embedded']} embedded, {outcome['scenes'] - outcome['embedded']} failed"
                       + (f"; {outcome['skipped']} video(s) changed meanwhile, skipped" if outcome["skipped"] else ""))
        failed = outcome["scenes"] - outcome["embedded"]
        if as_json:
            print_json(outcome)
        sys.exit(EXIT_FAILURE if failed else EXIT_OK)
    if as_json:
        print_json(outcome)


class _Plain:
    """The progress bar's stand-in when stderr is not a terminal."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __enter__(self) -> list[Any]:
        return self.items

    def __exit__(self, *exc: Any) -> None:
        return None
