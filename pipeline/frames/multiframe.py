"""Several frames per scene (``VIDX_FRAMES_PER_SCENE``): which ones, and their pooled embedding.

One best frame can be unlucky (a blink, motion blur that scored well, a
half-turned face); averaging the embeddings of the top-ranked distinct
frames of the shot gives a vector nearer what the shot is about. The best
frame keeps its role (``frame_path``, the JPEG the sidecar and the contact
sheet show); the others are written beside it and listed, each with its own
embedding, in the scene's ``frames``. All frames of a video go through one
``embed_frames`` call, so they are batched together and the timeout rule
holds per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.clip import embed_frames
from pipeline.clip.frames import FrameToEmbed
from pipeline.core.config import Settings
from pipeline.core.scene_schema import quality_json
from pipeline.core.types import Candidate, EmbeddingResult, FrameQuality, SceneFrame, SceneRecord

WriteJpeg = Callable[[Path, np.ndarray], None]


def extra_frame_filename(scene_index: int, rank: int) -> str:
    """The JPEG of a scene's ``rank``-th frame (rank 0 is the best frame, ``scene_NNNN.jpg``)."""
    return f"scene_{scene_index:04d}_f{rank}.jpg"


def select_frames(
    ranked: Sequence[tuple[Candidate, FrameQuality]], count: int
) -> list[tuple[Candidate, FrameQuality]]:
    """The best frame, then up to ``count - 1`` more distinct, non-rejected ones in rank order."""
    if not ranked:
        return []
    chosen = [ranked[0]]
    seen = {ranked[0][0].frame}
    for candidate, quality in ranked[1:]:
        if len(chosen) >= count:
            break
        if quality.rejected is None and candidate.frame not in seen:
            chosen.append((candidate, quality))
            seen.add(candidate.frame)
    return chosen


def write_scene_frames(
    ranked: Sequence[tuple[Candidate, FrameQuality]],
    scene_index: int,
    best_name: str,
    directory: Path,
    count: int,
    write_jpeg: WriteJpeg,
) -> list[SceneFrame] | None:
    """Write the extra frames' JPEGs; the scene's ``frames`` list (best first), or None when ``count`` is 1."""
    if count <= 1:
        return None
    frames = []
    for rank, (candidate, quality) in enumerate(select_frames(ranked, count)):
        name = best_name if rank == 0 else extra_frame_filename(scene_index, rank)
        if rank:
            write_jpeg(directory / name, candidate.image)
        frames.append(SceneFrame(frame=candidate.frame, time_s=candidate.time_s, path=name, quality=quality))
    return frames


def frame_names(record: SceneRecord) -> list[str]:
    """The file names of the frames a scene embeds (its best frame alone unless it lists ``frames``)."""
    if record.frames:
        return [frame.path for frame in record.frames]
    return [Path(record.frame_path).name]


def frames_to_embed(record: SceneRecord, frames_dir: Path) -> list[FrameToEmbed]:
    """The frames a scene embeds, in order: its best frame alone unless it lists ``frames``."""
    qualities = [f.quality for f in record.frames] if record.frames else [record.frame_quality]
    return [FrameToEmbed(Path(frames_dir) / name, quality_json(quality))
            for name, quality in zip(frame_names(record), qualities, strict=True)]


def scene_results(
    records: Sequence[SceneRecord], results: Sequence[EmbeddingResult], settings: Settings
) -> list[EmbeddingResult]:
    """One result per scene from the flat per-frame ``results`` (in :func:`frames_to_embed` order).

    Each listed frame's vector is stored in ``record.frames[i].embedding``; a
    scene with several frames gets their pooled mean.
    """
    out: list[EmbeddingResult] = []
    position = 0
    for record in records:
        count = len(record.frames) if record.frames else 1
        frame_results = list(results[position:position + count])
        position += count
        if record.frames:
            for frame, result in zip(record.frames, frame_results, strict=True):
                frame.embedding = result.vector
            out.append(pool(frame_results, normalize=settings.clip_normalize))
        else:
            out.append(frame_results[0])
    if position != len(results):
        raise ValueError(f"{len(results)} frame results for {position} frames")
    return out


def embed_records(records: Sequence[SceneRecord], frames_dir: Path, settings: Settings) -> list[EmbeddingResult]:
    """One result per scene: all frames embedded in one batched call, pooled when a scene has several."""
    frames = [frame for record in records for frame in frames_to_embed(record, frames_dir)]
    return scene_results(records, embed_frames(frames, settings), settings)


def pool(results: Sequence[EmbeddingResult], *, normalize: bool = True) -> EmbeddingResult:
    """The mean of the frames' vectors (re-normalised), with the first embedded frame's metadata.

    ``inference_time_ms`` becomes the sum over the frames (the scene's cost). No
    frame embedded: the best frame's result (NULL and its reason).
    """
    embedded = [r for r in results if r.vector is not None]
    if not embedded:
        return results[0]
    mean = np.mean(np.asarray([r.vector for r in embedded], dtype=np.float64), axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:  # frames pointing opposite ways: no direction to keep; the best embedded frame stands
        return embedded[0]
    if normalize:
        mean = mean / norm
    times = [r.metadata.get("inference_time_ms") for r in embedded]
    metadata = {**embedded[0].metadata,
                "inference_time_ms": round(sum(t for t in times if t is not None), 3) if any(times) else None}
    return EmbeddingResult(vector=[float(x) for x in mean], metadata=metadata)
