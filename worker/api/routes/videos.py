"""Videos: enqueue by URL or upload, list, status, scenes, contact sheet."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from pipeline import store
from pipeline.core.errors import BadInputError, first_line
from pipeline.core.log import get_logger
from pipeline.frames.sheet import contact_sheet_png
from pipeline.intake.sources import is_url
from pipeline.media.probe import probe
from pipeline.storage import open_storage
from pipeline.store.scene_reads import list_scenes
from worker.api.auth import Principal, require_key
from worker.api.context import get_context
from worker.api.errors import ApiError, not_found
from worker.api.presenters import scene_json, video_json
from worker.api.routes import parse_id
from worker.api.uploads import discard, new_upload_dir, safe_filename, save_body
from worker.broker import ping_broker
from worker.enqueue import enqueue_sources, source_label

log = get_logger("vidx.api")
router = APIRouter(prefix="/v1/videos", tags=["videos"])

MAX_URL_CHARS = 2048
_BINARY = {"schema": {"type": "string", "format": "binary"}}
VIDEO_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": _BINARY}}}


class EnqueueUrl(BaseModel):
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="An http(s) URL of a video.")


def _owned_video(conn: psycopg.Connection, raw_id: str, who: Principal) -> dict[str, Any]:
    row = store.get_video(conn, parse_id(raw_id, "video"))
    if row is None or row["owner_id"] != who.owner_id:
        raise not_found("video")
    return row


def _enqueue(request: Request, label: str, who: Principal, fetch: str | None = None) -> dict[str, Any]:
    settings = get_context(request).settings
    rows = enqueue_sources(settings, {label: fetch or label}, who.owner_id)
    log.info("api_video_enqueued", video_id=rows[0]["video_id"], owner_id=str(who.owner_id), key_id=str(who.key_id))
    with get_context(request).db.connection() as conn:
        return video_json(_owned_video(conn, rows[0]["video_id"], who), settings)


@router.post("", status_code=202, summary="Enqueue a video by URL")
def enqueue_url(body: EnqueueUrl, request: Request, who: Annotated[Principal, Depends(require_key)]) -> dict[str, Any]:
    """Queue an http(s) URL; the worker downloads it under the same size cap and safety rules as `vidx enqueue`."""
    if not is_url(body.url):
        raise ApiError(422, "unsupported source", "only http:// and https:// URLs; upload files with POST /v1/videos/upload")
    try:
        label = source_label(body.url, get_context(request).settings)
    except BadInputError as exc:
        raise ApiError(422, "unsupported source", first_line(exc)) from None
    ping_broker(get_context(request).settings)
    return _enqueue(request, label, who, fetch=body.url)


@router.post("/upload", status_code=202, summary="Enqueue an uploaded video", openapi_extra=VIDEO_BODY)
async def enqueue_upload(
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
    filename: Annotated[str | None, Query(max_length=255, description="Original file name (for display).")] = None,
) -> dict[str, Any]:
    """Send the video's bytes as the request body. It is probed (the same bad-input checks as
    every source) before it is queued; a refused file is deleted at once. With object storage
    configured (VIDX_STORAGE_URL) the file goes to the bucket, so workers need no shared disk."""
    settings = get_context(request).settings
    await run_in_threadpool(ping_broker, settings)  # an outage answers 503 before the client sends gigabytes
    directory = new_upload_dir(settings, who.owner_id)
    path = directory / safe_filename(filename, "upload.bin")
    try:
        await save_body(request, path, max_bytes=settings.api_upload_max_mb * 1024 * 1024, what="video")
        await run_in_threadpool(probe, path, settings)
        source = str(path)
        source = await run_in_threadpool(open_storage(settings).keep_upload, who.owner_id, path)
        if source != str(path):
            discard(directory)  # the store holds its own copy now; an unreachable bucket is a 503, nothing queued
    except BadInputError as exc:
        discard(directory)
        raise ApiError(422, "not a usable video", first_line(exc).replace(str(path), path.name)) from None
    except BaseException:
        discard(directory)
        raise
    # From here the row exists: the file stays for the worker (or the reconciler's retry).
    return await run_in_threadpool(_enqueue, request, source, who)


@router.get("", summary="List videos")
def list_owner_videos(
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The owner's most recent videos with status and progress."""
    ctx = get_context(request)
    with ctx.db.connection() as conn:
        rows = store.list_videos(conn, limit=limit, owner_id=who.owner_id)
    settings = ctx.settings
    return {"videos": [video_json(row, settings) for row in rows]}


@router.get("/{video_id}", summary="A video's status")
def get_video_status(
    video_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
) -> dict[str, Any]:
    ctx = get_context(request)
    with ctx.db.connection() as conn:
        return video_json(_owned_video(conn, video_id, who), ctx.settings)


@router.get("/{video_id}/scenes", summary="A video's scenes")
def get_video_scenes(
    video_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
) -> dict[str, Any]:
    with get_context(request).db.connection() as conn:
        row = _owned_video(conn, video_id, who)
        scenes = list_scenes(conn, row["id"], owner_id=who.owner_id)
    return {"video": video_json(row, get_context(request).settings), "scenes": [scene_json(s) for s in scenes]}


@router.get(
    "/{video_id}/sheet.png",
    summary="A video's contact sheet",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_contact_sheet(
    video_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    with get_context(request).db.connection() as conn:
        row = _owned_video(conn, video_id, who)  # ownership first: another owner's video is 404 either way
        try:
            png = contact_sheet_png(conn, row["id"], owner_id=who.owner_id, settings=get_context(request).settings, page=page)
        except BadInputError as exc:
            raise ApiError(404, "no contact sheet", first_line(exc)) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})
