"""``vidx index``: index videos in this process, no broker needed (the single-machine job)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import click

from pipeline.config import Settings
from pipeline.errors import BadInputError, VidxError, one_line
from pipeline.indexer import IndexResult, canonical_source, index_video, video_id_for
from pipeline.log import get_logger
from worker.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, get_settings, handle_errors, owner_option, print_json


def summarize(result: IndexResult) -> dict[str, Any]:
    """The ``--json`` view of one indexed video (embeddings left out: see the sidecar)."""
    return {
        "video_id": str(result.video_id),
        "owner_id": str(result.owner_id),
        "source": result.source,
        "sidecar": f"{result.sidecar_dir}/sidecar.json",
        "db_written": result.db_written,
        "probe": result.probe.to_json(),
        "scenes": [
            {
                "index": s.scene_index,
                "start_s": round(s.start_s, 3),
                "end_s": round(s.end_s, 3),
                "start_frame": s.start_frame,
                "end_frame": s.end_frame,
                "best_frame_time_s": round(s.best_time_s, 3),
                "quality_score": s.frame_quality.get("quality_score"),
                "frame_path": s.frame_path,
                "embedded": s.embedding is not None,
                "embedding_error": s.visual_clip_metadata.get("error"),
            }
            for s in result.scenes
        ],
        "timing": {k: round(v, 1) for k, v in result.timing_ms.items()},
    }


def print_table(result: IndexResult) -> None:
    """Human-readable scene table for one video."""
    embedded = sum(s.embedding is not None for s in result.scenes)
    click.echo(
        f"{result.source}\n  video {result.video_id}  {len(result.scenes)} scenes, "
        f"{embedded} embedded, {result.timing_ms.get('total_ms', 0) / 1000:.1f}s  -> {result.sidecar_dir}"
    )
    click.echo(f"  {'scene':>5}  {'start':>9}  {'end':>9}  {'best@':>9}  {'quality':>7}  embedding")
    for s in result.scenes:
        status = "ok" if s.embedding is not None else (s.visual_clip_metadata.get("error") or "none")
        click.echo(
            f"  {s.scene_index:>5}  {s.start_s:>9.2f}  {s.end_s:>9.2f}  {s.best_time_s:>9.2f}  "
            f"{s.frame_quality.get('quality_score', 0.0):>7.3f}  {status}"
        )


class _ProgressBar:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str) -> None:
        self._bar = None
        self._shown = 0
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=1000, label=label, file=sys.stderr, show_eta=True)
            self._bar.__enter__()

    def __call__(self, fraction: float, stage: str) -> None:
        if self._bar is None:
            return
        target = int(fraction * 1000)
        if target > self._shown:
            self._bar.update(target - self._shown)
            self._shown = target

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _index_one(path: str, owner: UUID, settings: Settings, write_db: bool) -> IndexResult:
    """Probe first (bad input: no DB row at all), then track the run in the videos table."""
    from pipeline.probe import probe

    source = Path(path)
    label = canonical_source(path)
    video_id = video_id_for(owner, label)
    probe_result = probe(source, settings)
    from pipeline import store

    conn = None
    if write_db:
        conn = store.connect(settings)
        store.upsert_video(conn, video_id=video_id, owner_id=owner, source=label, status="running")
    bar = _ProgressBar(Path(path).name[:30])
    try:
        return index_video(
            source,
            video_id=video_id,
            owner_id=owner,
            settings=settings,
            source_label=label,
            write_db=write_db,
            on_progress=bar,
            probe_result=probe_result,
        )
    except BaseException as exc:
        if conn is not None:
            reason = str(exc) if isinstance(exc, VidxError) else f"{type(exc).__name__}: {exc}"
            store.set_video_status(conn, video_id, "failed", error=reason[:2000])
        raise
    finally:
        bar.close()
        if conn is not None:
            conn.close()


@click.command("index")
@click.argument("paths", nargs=-1, required=True)
@owner_option()
@click.option("--sidecar-dir", type=click.Path(file_okay=False, path_type=Path), help="Where sidecars go.")
@click.option("--no-db", is_flag=True, help="Write sidecars only; do not touch the database.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@handle_errors
def index_command(paths: tuple[str, ...], owner: UUID, sidecar_dir: Path | None, no_db: bool, as_json: bool) -> None:
    """Index PATH... in this process: scenes, best frames, CLIP embeddings, sidecar (+ database).

    Every path is attempted; one that fails does not stop the others. Exit
    code: 0 all indexed, 2 some input was bad, 1 some other failure.
    """
    settings = get_settings()
    if sidecar_dir is not None:
        settings = settings.with_overrides(sidecar_dir=sidecar_dir)
    log = get_logger("vidx.cli")
    outputs: list[dict[str, Any]] = []
    exit_code = EXIT_OK
    for path in paths:
        try:
            result = _index_one(path, owner, settings, write_db=not no_db)
        except BadInputError as exc:
            exit_code = max(exit_code, EXIT_USAGE)
            click.echo(f"vidx: error: {exc}", err=True)
            outputs.append({"source": path, "error": str(exc), "kind": "bad_input"})
            continue
        except Exception as exc:  # noqa: BLE001 - one video's failure must not stop the others
            reason = str(exc) if isinstance(exc, VidxError) else f"{type(exc).__name__}: {exc}"
            exit_code = exit_code if exit_code == EXIT_USAGE else EXIT_FAILURE
            click.echo(f"vidx: error: {path}: {one_line(exc)}", err=True)
            outputs.append({"source": path, "error": reason, "kind": "failed"})
            continue
        log.debug("cli.indexed", video_id=str(result.video_id))
        if as_json:
            outputs.append(summarize(result))
        else:
            print_table(result)
    if as_json:
        print_json(outputs)
    sys.exit(exit_code)


def register(cli: click.Group) -> None:
    """Attach ``vidx index`` to the root group."""
    cli.add_command(index_command)
