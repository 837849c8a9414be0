"""Search: by text, by an uploaded image, and scenes similar to a scene."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from pipeline import clip, store  # pipeline.clip is light: torch loads on the first encode
from pipeline.clip.identity import model_identity
from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, first_line
from pipeline.store.search import DEFAULT_THRESHOLD, SceneNotFound
from worker.api.auth import Principal, require_key
from worker.api.context import ApiContext, get_context
from worker.api.errors import ApiError, not_found
from worker.api.presenters import scene_json
from worker.api.routes import parse_id
from worker.api.uploads import discard, save_body, temp_dir

router = APIRouter(prefix="/v1", tags=["search"])

MAX_LIMIT = 100
MAX_TEXT_CHARS = 1000
MAX_IMAGE_PIXELS = 50_000_000
IMAGE_BODY = {"requestBody": {"required": True, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}}

Threshold = Annotated[float | None, Query(ge=-1.0, le=1.0, description="Minimum similarity (1 - cosine distance).")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# A label filter reaches PostgreSQL as text, which cannot hold NUL: refused as a bad request (422), not a 500.
LABEL_MAX_CHARS = 200
LABEL_PATTERN = r"^[^\x00]+$"
Label = Annotated[str | None, Query(min_length=1, max_length=LABEL_MAX_CHARS, pattern=LABEL_PATTERN,
                                    description="Only scenes with this label.")]


class TextQuery(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT)
    label: str | None = Field(default=None, min_length=1, max_length=LABEL_MAX_CHARS, pattern=LABEL_PATTERN)


def _answer(ctx: ApiContext, kind: str, started: float, rows: list[dict[str, Any]], threshold: float) -> JSONResponse:
    """The results as a ready response: they are plain JSON already, so FastAPI's generic
    encoder (about 1 ms for 20 scenes, bench/api.py) is skipped."""
    ctx.metrics.search_latency.labels(kind).observe(time.perf_counter() - started)
    return JSONResponse({"threshold": threshold, "results": [scene_json(r) for r in rows]})


def _search_vector(ctx: ApiContext, vector: Any, who: Principal, threshold: float, limit: int, label: str | None) -> list:
    with ctx.db.connection() as conn:
        return store.search_by_embedding(
            conn, vector, owner_id=who.owner_id, threshold=threshold, limit=limit,
            model=model_identity(ctx.settings), label=label,
        )


def _text_search(ctx: ApiContext, query: TextQuery, who: Principal, threshold: float) -> list:
    if not query.text.strip():
        raise ApiError(422, "invalid request", "text must not be blank")
    vector = clip.encode_text([query.text], ctx.settings)[0]
    return _search_vector(ctx, vector, who, threshold, query.limit, query.label)


@router.post("/search/text", summary="Scenes matching a text")
def search_text(query: TextQuery, request: Request, who: Annotated[Principal, Depends(require_key)]) -> JSONResponse:
    ctx = get_context(request)
    started = time.perf_counter()
    threshold = DEFAULT_THRESHOLD["text"] if query.threshold is None else query.threshold
    return _answer(ctx, "text", started, _text_search(ctx, query, who, threshold), threshold)


def check_image(path: Path) -> None:
    """Refuse what is not a complete, reasonably sized raster image (before the model sees it)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ApiError(413, "image too large", f"{width}x{height} is over {MAX_IMAGE_PIXELS} pixels")
            image.load()  # a truncated file fails here
    except UnidentifiedImageError:
        raise ApiError(422, "not an image", "send a JPEG, PNG, WebP or GIF as the request body") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(422, "unreadable image", first_line(exc)) from None


def _image_search(settings: Settings, ctx: ApiContext, path: Path, who: Principal, threshold: float, limit: int,
                  label: str | None) -> list:
    check_image(path)
    try:
        vector = clip.encode_image(path, settings)
    except BadInputError as exc:
        raise ApiError(422, "unreadable image", first_line(exc).replace(str(path), "image")) from None
    return _search_vector(ctx, vector, who, threshold, limit, label)


@router.post("/search/image", summary="Scenes looking like an uploaded image", openapi_extra=IMAGE_BODY)
async def search_image(
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
    threshold: Threshold = None,
    limit: Limit = 20,
    label: Label = None,
) -> JSONResponse:
    """Send the image's bytes as the request body (capped by VIDX_API_IMAGE_MAX_MB)."""
    ctx = get_context(request)
    started = time.perf_counter()
    path = temp_dir(ctx.settings) / f"query-{uuid.uuid4().hex}"
    try:
        await save_body(request, path, max_bytes=ctx.settings.api_image_max_mb * 1024 * 1024, what="image")
        chosen = DEFAULT_THRESHOLD["image"] if threshold is None else threshold
        rows = await run_in_threadpool(_image_search, ctx.settings, ctx, path, who, chosen, limit, label)
    finally:
        discard(path)
    return _answer(ctx, "image", started, rows, chosen)


@router.get("/scenes/{scene_id}/similar", summary="Scenes like a scene", tags=["scenes"])
def search_similar(
    scene_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require_key)],
    threshold: Threshold = None,
    limit: Limit = 20,
    label: Label = None,
) -> JSONResponse:
    ctx = get_context(request)
    started = time.perf_counter()
    chosen = DEFAULT_THRESHOLD["scene"] if threshold is None else threshold
    scene = parse_id(scene_id, "scene")
    with ctx.db.connection() as conn:
        try:  # the SQL function checks ownership in the same query (one round trip)
            rows = store.search_similar(conn, scene, owner_id=who.owner_id, threshold=chosen, limit=limit, label=label)
        except SceneNotFound:
            raise not_found("scene") from None
    return _answer(ctx, "scene", started, rows, chosen)
