"""``vidx index``: index videos in this process, no broker needed (the single-machine job)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import psycopg

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, ProcessingError, VidxError, one_line
from pipeline.core.log import get_logger
from pipeline.core.scene_schema import scene_json
from pipeline.core.types import ProbeResult
from pipeline.indexer import IndexResult, index_video
from pipeline.intake.naming import canonical_source, video_id_for
from pipeline.jobs import Run, claim_here
from pipeline.store.connection import connect
from pipeline.store.scenes import scene_ids as read_scene_ids
from pipeline.store.videos import Lease, RunEnd
from worker.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    exit_process,
    get_settings,
    handle_errors,
    owner_option,
    print_json,
)


def summarize(result: IndexResult, scene_ids: dict[int, UUID] | None = None) -> dict[str, Any]:
    """The ``--json`` view of one indexed video: each scene the sidecar's (embeddings left out), plus its ids."""
    scene_ids = scene_ids or {}
    return {
        "video_id": str(result.video_id),
        "owner_id": str(result.owner_id),
        "source": result.source,
        "sidecar": f"{result.sidecar_dir}/sidecar.json",
        "db_written": result.db_written,
        "probe": result.probe.to_json(),
        "scenes": [
            {
                **scene_json(s, vectors=False),
                "scene_id": str(scene_ids[s.index]) if s.index in scene_ids else None,
                "frame_path": s.frame_path,
                "embedded": s.embedding is not None,
                "embedding_model": s.embedding_model,
            }
            for s in result.scenes
        ],
        "timing": {k: round(v, 1) for k, v in result.timing_ms.items()},
    }


def print_table(result: IndexResult, scene_ids: dict[int, UUID] | None = None) -> None:
    """Human-readable scene table for one video (scene ids when the database has them)."""
    scene_ids = scene_ids or {}
    embedded = sum(s.embedding is not None for s in result.scenes)
    click.echo(
        f"{result.source}\n  video {result.video_id}  {len(result.scenes)} scenes, "
        f"{embedded} embedded, {result.timing_ms.get('total_ms', 0) / 1000:.1f}s  -> {result.sidecar_dir}"
    )
    id_header = f"  {'scene id':<36}" if scene_ids else ""
    click.echo(f"  {'scene':>5}  {'start':>9}  {'end':>9}  {'best@':>9}  {'quality':>7}{id_header}  embedding")
    for s in result.scenes:
        status = "ok" if s.embedding is not None else (s.visual_clip_metadata.get("error") or "none")
        scene_id = f"  {str(scene_ids.get(s.index, '-')):<36}" if scene_ids else ""
        click.echo(
            f"  {s.index:>5}  {s.start_s:>9.2f}  {s.end_s:>9.2f}  {s.best_time_s:>9.2f}  "
            f"{s.frame_quality.quality_score:>7.3f}{scene_id}  {status}"
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


def _index_one(path: str, owner: UUID, settings: Settings, write_db: bool) -> tuple[IndexResult, dict[int, UUID]]:
    """Index one file; with the database, a run of its video (``pipeline.jobs``) claimed once the probe accepted it.

    Bad input at the probe leaves no row; any later failure ends the run
    ``failed`` with its reason (``vidx index`` runs once: no retries).
    """
    label = canonical_source(path)
    video_id = video_id_for(owner, label)
    with ExitStack() as stack:
        bar = _ProgressBar(Path(path).name[:30])
        stack.callback(bar.close)
        conn: psycopg.Connection | None = None
        run: Run | None = None

        def claim_after_probe(_probe: ProbeResult) -> Lease:
            nonlocal conn, run
            conn = stack.enter_context(connect(settings))
            run = stack.enter_context(Run(conn, claim_here(conn, video_id, owner, label, settings), settings,
                                          retries=False))
            return run.lease

        def on_progress(fraction: float, stage: str) -> None:
            bar(fraction, stage)
            if run is not None:
                run.progress(fraction, stage)

        try:
            result = index_video(
                Path(path),
                video_id=video_id,
                owner_id=owner,
                settings=settings,
                source_label=label,
                write_db=write_db,
                on_progress=on_progress,
                claim_after_probe=claim_after_probe if write_db else None,
            )
        except BaseException as exc:
            if run is not None:
                run.settle(exc)
            raise
        if run is None or conn is None:
            return result, {}
        run.finished(result.outcome, scenes=len(result.scenes))
        if result.outcome is not RunEnd.FINISHED:
            raise ProcessingError(f"{label}: not published ({result.outcome}): the video was re-enqueued meanwhile")
        return result, read_scene_ids(conn, video_id)


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
            result, scene_ids = _index_one(path, owner, settings, write_db=not no_db)
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
            outputs.append(summarize(result, scene_ids))
        else:
            print_table(result, scene_ids)
    if as_json:
        print_json(outputs)
    exit_process(exit_code)
