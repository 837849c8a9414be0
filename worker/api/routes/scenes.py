"""Scenes: one scene, and its best frame (read only through the owner's scene row)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.storage import open_storage
from pipeline.store.scene_reads import get_scene
from worker.api.auth import Principal, require_key
from worker.api.context import get_context
from worker.api.errors import ApiError, not_found
from worker.api.presenters import scene_json
from worker.api.routes import parse_id

log = get_logger("vidx.api")
router = APIRouter(prefix="/v1/scenes", tags=["scenes"])

FRAME_CACHE_CONTROL = "private, max-age=3600"


def _owned_scene(request: Request, raw_id: str, who: Principal) -> dict[str, Any]:
    scene_id = parse_id(raw_id, "scene")
    with get_context(request).db.connection() as conn:
        row = get_scene(conn, scene_id, owner_id=who.owner_id)
    if row is None:
        raise not_found("scene")
    return row


@router.get("/{scene_id}", summary="One scene")
def get_one_scene(
    scene_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
) -> dict[str, Any]:
    return scene_json(_owned_scene(request, scene_id, who))


def frame_bytes(frame_path: str | None, settings: Settings) -> bytes | None:
    """The frame's bytes if it lies inside the configured store (a directory or a bucket), else None.

    The path comes from the owner's own row, never from the request; checking it lies
    inside the store still keeps a bad row from serving any other file.
    Object storage trouble raises ``TransientError`` (a 503).
    """
    if not frame_path:
        return None
    try:
        return open_storage(settings).read_frame(frame_path)
    except (FileNotFoundError, IsADirectoryError, ValueError):
        return None


@router.get(
    "/{scene_id}/frame.jpg",
    summary="A scene's best frame",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified (ETag)"}},
)
def get_frame(
    scene_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
) -> Response:
    row = _owned_scene(request, scene_id, who)
    data = frame_bytes(row["frame_path"], get_context(request).settings)
    if data is None:
        log.warning("api_frame_missing", scene_id=str(row["id"]))
        raise ApiError(404, "no frame for this scene", None)
    etag = '"' + hashlib.sha256(str(row["id"]).encode() + b":" + data).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": FRAME_CACHE_CONTROL}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)
