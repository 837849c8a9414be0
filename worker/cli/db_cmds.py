"""``vidx migrate``, ``vidx db``, ``vidx search``, ``vidx stats`` (database side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import click

from pipeline import clip, store  # pipeline.clip is light: torch loads on the first encode
from pipeline.clip.identity import model_identity
from pipeline.core.scene_schema import record_from_row, scene_json, score
from pipeline.store import embedded
from pipeline.store.search import DEFAULT_THRESHOLD
from worker.cli.common import get_settings, handle_errors, owner_option, print_json


@click.command("migrate")
@click.option("--json", "as_json", is_flag=True, help="Print the applied migrations as JSON.")
@handle_errors
def migrate_command(as_json: bool) -> None:
    """Apply pending migrations from infra/migrations (safe to re-run)."""
    settings = get_settings()
    with store.open_connection(store.resolve_database_url(settings)) as conn:
        store.ensure_pgvector(conn)
        applied = store.migrate(conn)
    if as_json:
        print_json({"applied": applied})
    elif applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")


@click.group("db")
def db_group() -> None:
    """The embedded PostgreSQL (used when DATABASE_URL is unset)."""


@db_group.command("start")
@handle_errors
def db_start() -> None:
    """Start the embedded server in VIDX_DATA_DIR (it keeps running until `vidx db stop`)."""
    settings = get_settings()
    if settings.database_url:
        click.echo("DATABASE_URL is set: vidx uses that server; nothing to start", err=True)
        return
    click.echo(embedded.start(settings.data_dir))


@db_group.command("stop")
@handle_errors
def db_stop() -> None:
    """Stop the embedded server."""
    settings = get_settings()
    if settings.database_url:
        click.echo("DATABASE_URL is set: vidx does not manage that server; nothing to stop", err=True)
        return
    stopped = embedded.stop(settings.data_dir)
    click.echo("stopped" if stopped else "not running")


@db_group.command("url")
@handle_errors
def db_url() -> None:
    """Print the database URL vidx uses (starting the embedded server if needed), e.g. for psql."""
    click.echo(store.resolve_database_url(get_settings()))


def _format_time(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{secs:05.2f}"


def _result_json(rank: int, row: dict[str, Any]) -> dict[str, Any]:
    """A search result: the scene object (no vector) plus its rank, ids, video, similarity, file and model."""
    return {
        "rank": rank,
        "scene_id": str(row["id"]),
        "video_id": str(row["video_id"]),
        "source": row["source"],
        **scene_json(record_from_row(row), vectors=False),
        "similarity": score(row["similarity"]),
        "frame_path": row["frame_path"],
        "embedding_model": row.get("embedding_model"),
    }


@click.command("search")
@click.option("--text", "text", help="Find scenes matching this text.")
@click.option("--image", "image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Find scenes looking like this image.")
@click.option("--scene", "scene", type=click.UUID, help="Find scenes like this scene (its id).")
@owner_option(required=True)
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Minimum similarity (1 - cosine distance). Default: 0.2 for --text, 0.5 for --image/--scene.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Most scenes to return.")
@click.option("--label", default=None, help="Only scenes carrying this zero-shot label.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@handle_errors
def search_command(
    text: str | None,
    image: Path | None,
    scene: UUID | None,
    owner: UUID,
    threshold: float | None,
    limit: int,
    label: str | None,
    as_json: bool,
) -> None:
    """Ranked scenes of one owner by CLIP similarity, via the SQL search function.

    Text and image queries meet only embeddings of the configured model
    (CLIP_MODEL_NAME, CLIP_PRETRAINED, CLIP_CHECKPOINT); --scene uses that scene's own model.
    """
    chosen = [name for name, value in (("text", text), ("image", image), ("scene", scene)) if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --text, --image, --scene")
    mode = chosen[0]
    if mode == "text" and not (text or "").strip():
        raise click.UsageError("--text must not be empty")
    if threshold is None:
        threshold = DEFAULT_THRESHOLD[mode]
    settings = get_settings()
    with store.connect(settings) as conn:  # before the model load: a database problem shows at once
        if mode == "scene":
            assert scene is not None
            rows = store.search_similar(conn, scene, owner_id=owner, threshold=threshold, limit=limit, label=label)
        else:
            if mode == "text":
                query = clip.encode_text([text], settings)[0]
            else:
                query = clip.encode_image(image, settings)
            rows = store.search_by_embedding(
                conn, query, owner_id=owner, threshold=threshold, limit=limit,
                model=model_identity(settings), label=label,
            )

    results = [_result_json(rank, row) for rank, row in enumerate(rows, start=1)]
    if as_json:
        print_json(results)
        return
    if not results:
        click.echo(f"no scenes with similarity >= {threshold:g}", err=True)
        return
    click.echo(f"{'#':>3}  {'similarity':>10}  {'time':>19}  video / frame")
    for r in results:
        span = f"{_format_time(r['start_s'])}-{_format_time(r['end_s'])}"
        click.echo(f"{r['rank']:>3}  {r['similarity']:>10.4f}  {span:>19}  {r['source']}  (scene {r['index']})")
        click.echo(f"{'':>36}{r['frame_path'] or '-'}")


def _figures_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, float):
            value = round(value, 4)
        out[key] = str(value) if isinstance(value, UUID) else value
    return out


@click.command("stats")
@click.option("--owner", type=click.UUID, default=None, help="Only this owner (default: all owners).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@handle_errors
def stats_command(owner: UUID | None, as_json: bool) -> None:
    """Embedding coverage, CLIP inference time, failure and timeout rates: overall and per owner."""
    with store.connect(get_settings()) as conn:
        figures = store.stats(conn, owner_id=owner)
    data = {
        "overall": _figures_json(figures["overall"]),
        "per_owner": [_figures_json(row) for row in figures["per_owner"]],
        "videos": figures["videos"],
        "per_model": [_figures_json(row) for row in figures.get("per_model", [])],
    }
    if as_json:
        print_json(data)
        return

    def line(label: str, f: dict[str, Any]) -> str:
        mean = "-" if f["mean_inference_ms"] is None else f"{f['mean_inference_ms']:.1f}"
        p95 = "-" if f["p95_inference_ms"] is None else f"{f['p95_inference_ms']:.1f}"
        return (
            f"{label:<36}  {f['scenes']:>8}  {f['embedded_share']:>8.1%}  {mean:>9}  {p95:>9}"
            f"  {f['failure_rate']:>8.1%}  {f['timeout_rate']:>8.1%}"
        )

    videos = ", ".join(f"{count} {status}" for status, count in data["videos"].items())
    click.echo(f"videos: {videos}")
    click.echo(f"{'owner':<36}  {'scenes':>8}  {'embedded':>8}  {'mean ms':>9}  {'p95 ms':>9}  {'failures':>8}  {'timeouts':>8}")
    click.echo(line("all", data["overall"]))
    for row in data["per_owner"]:
        click.echo(line(row["owner_id"], row))
    _print_model_coverage(data["per_model"])


def _print_model_coverage(rows: list[dict[str, Any]]) -> None:
    """Issue 14: which model made the embeddings (`vidx reembed` moves the rest to the configured one)."""
    configured = model_identity(get_settings())
    click.echo(f"\n{'embedding model':<52}  {'scenes':>8}  {'share':>7}  {'videos':>6}  {'labelled':>8}")
    for row in rows:
        name = row["embedding_model"] or "(no embedding)"
        mark = "  <- configured" if row["embedding_model"] == configured else ""
        click.echo(f"{name:<52}  {row['scenes']:>8}  {row['share']:>7.1%}  {row['videos']:>6}  {row['labelled']:>8}{mark}")
