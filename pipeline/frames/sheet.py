"""Contact sheets: one tile per scene (best frame, timecode, top label), as a PNG.

A sheet is for a glance at a whole video, so tiles keep a fixed readable
size and a long video is split into pages of at most ``TILES_PER_PAGE``
scenes rather than shrunk into unreadable thumbnails. Text uses Pillow's
built-in scalable font, so nothing needs installing.
"""

from __future__ import annotations

import io
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from PIL import Image, ImageDraw, ImageFont

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError
from pipeline.frames.image_files import open_frame
from pipeline.storage import VideoStorage, open_storage
from pipeline.store.video_scenes import owned_video, video_scenes

TILES_PER_PAGE = 40
MAX_COLUMNS = 8
THUMB_W, THUMB_H = 256, 144
CAPTION_H = 40
GAP = 8
HEADER_H = 44
BACKGROUND = (24, 24, 28)
TILE_BACKGROUND = (44, 44, 50)
TEXT = (235, 235, 235)
DIM_TEXT = (160, 160, 170)
SHEET_NAME = "contact_sheet.png"


@dataclass(frozen=True)
class Tile:
    """What one scene's tile shows."""

    scene_index: int
    start_s: float
    end_s: float
    frame_path: str | None
    label: str | None  # "dog 62%", or why there is none


def timecode(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss`` from an hour on)."""
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def page_count(scenes: int) -> int:
    return max(1, math.ceil(scenes / TILES_PER_PAGE))


def tile_for(scene: dict[str, Any]) -> Tile:
    """A tile from a ``video_scenes`` row."""
    labels = scene.get("labels") or []
    if labels:
        label = f"{labels[0]['label']} {100 * float(labels[0]['score']):.0f}%"
    elif not scene.get("embedded"):
        label = "no embedding"
    else:
        label = "no labels"
    return Tile(scene["scene_index"], scene["start_s"], scene["end_s"], scene.get("frame_path"), label)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _thumbnail(path: str | None, storage: VideoStorage | None) -> Image.Image | None:
    if not path or storage is None:
        return None
    try:
        image = open_frame(path, storage)
    except OSError:
        return None
    image.thumbnail((THUMB_W, THUMB_H))
    return image


def _grid(count: int) -> tuple[int, int]:
    """(columns, rows) for ``count`` tiles: roughly as wide as a screen, at most ``MAX_COLUMNS`` across."""
    count = max(1, count)
    columns = min(MAX_COLUMNS, count, max(1, math.ceil(math.sqrt(count * 1.6))))
    return columns, math.ceil(count / columns)


def tile_boxes(count: int) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of each tile's frame area on a page of ``count`` tiles."""
    columns, _ = _grid(count)
    tile_h = THUMB_H + CAPTION_H
    return [(GAP + (i % columns) * (THUMB_W + GAP), HEADER_H + (i // columns) * (tile_h + GAP), THUMB_W, THUMB_H)
            for i in range(count)]


def render_sheet(
    tiles: Sequence[Tile], *, title: str, page: int = 1, pages: int = 1, storage: VideoStorage | None = None
) -> Image.Image:
    """One page of tiles (at most ``TILES_PER_PAGE``), as an RGB image.

    ``storage``: where the frames are read from; None draws every tile as "frame missing".
    """
    columns, rows = _grid(len(tiles))
    tile_h = THUMB_H + CAPTION_H
    width = GAP + columns * (THUMB_W + GAP)
    height = HEADER_H + rows * (tile_h + GAP) + GAP
    sheet = Image.new("RGB", (max(width, 480), height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    header = f"{title}   {len(tiles)} scenes" + (f"   page {page}/{pages}" if pages > 1 else "")
    draw.text((GAP, 12), header, fill=TEXT, font=_font(18))
    caption_font, label_font = _font(14), _font(13)
    for tile, (x, y, _, _) in zip(tiles, tile_boxes(len(tiles)), strict=True):
        draw.rectangle((x, y, x + THUMB_W - 1, y + tile_h - 1), fill=TILE_BACKGROUND)
        thumb = _thumbnail(tile.frame_path, storage)
        if thumb is None:
            draw.text((x + 12, y + THUMB_H // 2 - 8), "frame missing", fill=DIM_TEXT, font=caption_font)
        else:  # letterboxed in the tile's 16:9 box
            sheet.paste(thumb, (x + (THUMB_W - thumb.width) // 2, y + (THUMB_H - thumb.height) // 2))
        span = f"#{tile.scene_index}  {timecode(tile.start_s)}-{timecode(tile.end_s)}"
        draw.text((x + 6, y + THUMB_H + 3), span, fill=TEXT, font=caption_font)
        draw.text((x + 6, y + THUMB_H + 21), _fit(draw, tile.label or "", label_font, THUMB_W - 12),
                  fill=DIM_TEXT, font=label_font)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sheet_pages(conn: psycopg.Connection, video_id: UUID, *, owner_id: UUID) -> tuple[str, list[list[Tile]]]:
    """(title, tiles per page) of the owner's video; :class:`BadInputError` when not found or without scenes."""
    video = owned_video(conn, video_id, owner_id)
    scenes = video_scenes(conn, video_id, owner_id)
    if not scenes:
        raise BadInputError(f"video {video_id} has no scenes (status {video['status']})")
    tiles = [tile_for(scene) for scene in scenes]
    title = f"{Path(str(video['source'])).name}  ({video_id})"
    return title, [tiles[i : i + TILES_PER_PAGE] for i in range(0, len(tiles), TILES_PER_PAGE)]


def contact_sheet_png(
    conn: psycopg.Connection, video_id: UUID, *, owner_id: UUID, settings: Settings, page: int = 1
) -> bytes:
    """Page ``page`` (1-based) of the video's contact sheet as PNG bytes.

    Raises :class:`BadInputError` when the video is not that owner's, has no
    scenes, or has no such page.
    """
    title, pages = sheet_pages(conn, video_id, owner_id=owner_id)
    if not 1 <= page <= len(pages):
        raise BadInputError(f"page {page} does not exist: the sheet of video {video_id} has {len(pages)} page(s)")
    storage = open_storage(settings)
    return to_png(render_sheet(pages[page - 1], title=title, page=page, pages=len(pages), storage=storage))


def sheet_filename(page: int, pages: int) -> str:
    """``contact_sheet.png``, or ``contact_sheet_p2.png`` ... when there are several pages."""
    return SHEET_NAME if pages == 1 else f"contact_sheet_p{page}.png"


def write_png_atomic(path: Path, data: bytes) -> None:
    """Temp file beside ``path`` then rename: a reader never sees half a PNG."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
