"""Synthetic scene embeddings shaped like a video catalogue, and owners of skewed sizes.

Why not i.i.d. clusters: real CLIP scene embeddings are nested. Shots of one
video are near-duplicates of each other (same set, same people), videos on one
subject form looser clusters, and every image embedding shares a common
direction (CLIP's space is anisotropic: two unrelated photos still score ~0.3-0.5).
Queries must not be copies of stored points, or any index looks perfect: they
are held-out draws of the same generator (a new shot of a stored video, a new
video on one of the owner's subjects, or a subject of someone else's).

Geometry (unit vectors, 512-d): scene = norm(0.8 mean + topic_part), where
topic -> video (cos ~0.75) -> scene (cos ~0.9), and a third of the scenes are
re-takes of an earlier scene of the same video (cos ~0.98).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIM = 512
VIDEO_SPREAD = 0.85  # topic -> video offset (norm of the noise added to a unit topic)
SCENE_SPREAD = 0.5  # video -> scene
RETAKE_SPREAD = 0.15  # scene -> re-take of that scene
RETAKE_SHARE = 0.33
MEAN_WEIGHT = 0.8  # the shared direction of every CLIP image embedding
TOPICS_PER_OWNER = 12


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _unit_noise(rng: np.random.Generator, rows: int) -> np.ndarray:
    return normalise(rng.standard_normal((rows, DIM), dtype=np.float32))


def owner_sizes(n: int, owners: int, exponent: float = 1.0) -> np.ndarray:
    """Rows per owner, Zipf 1/rank**exponent: with 1,000 owners the largest holds ~13%, the smallest ~0.013%."""
    weights = 1.0 / np.arange(1, owners + 1) ** exponent
    sizes = np.maximum(1, np.floor(n * weights / weights.sum())).astype(np.int64)
    sizes[0] += n - sizes.sum()  # rounding remainder to the largest
    return sizes


@dataclass
class Catalogue:
    """Generated rows (in owner order) and what is needed to draw held-out queries."""

    vectors: np.ndarray  # (n, DIM) float32, unit
    owner_of_row: np.ndarray  # owner rank per row
    video_of_row: np.ndarray  # global video number per row
    scene_in_video: np.ndarray
    sizes: np.ndarray  # rows per owner
    topics: np.ndarray  # (topics, DIM) topic directions (before the shared mean)
    owner_topics: np.ndarray  # (owners, TOPICS_PER_OWNER) topic numbers
    video_centres: np.ndarray  # (videos, DIM)
    video_owner: np.ndarray
    mean: np.ndarray


def _embed(mean: np.ndarray, parts: np.ndarray) -> np.ndarray:
    return normalise(MEAN_WEIGHT * mean + normalise(parts))


def generate(n: int, owners: int, rng: np.random.Generator, chunk: int = 50_000) -> Catalogue:
    """``n`` scenes over ``owners`` owners; videos of 5..80 scenes, topics shared across owners."""
    sizes = owner_sizes(n, owners)
    n_topics = max(50, n // 500)
    topics = _unit_noise(rng, n_topics)
    mean = _unit_noise(rng, 1)[0]
    # each owner films a handful of subjects, popular subjects more often (Zipf over topics)
    topic_weights = 1.0 / np.arange(1, n_topics + 1) ** 0.7
    topic_weights /= topic_weights.sum()
    owner_topics = rng.choice(n_topics, size=(owners, TOPICS_PER_OWNER), p=topic_weights)

    video_owner_list: list[int] = []
    video_len_list: list[int] = []
    for owner, size in enumerate(sizes):
        left = int(size)
        while left > 0:
            length = int(min(left, rng.integers(5, 81)))
            video_owner_list.append(owner)
            video_len_list.append(length)
            left -= length
    video_owner = np.array(video_owner_list, dtype=np.int64)
    video_len = np.array(video_len_list, dtype=np.int64)
    video_topic = owner_topics[video_owner, rng.integers(0, TOPICS_PER_OWNER, len(video_owner))]
    video_centres = normalise(topics[video_topic] + VIDEO_SPREAD * _unit_noise(rng, len(video_owner)))

    video_of_row = np.repeat(np.arange(len(video_owner)), video_len)
    starts = np.concatenate(([0], np.cumsum(video_len)[:-1]))
    scene_in_video = np.arange(n) - np.repeat(starts, video_len)
    owner_of_row = video_owner[video_of_row]

    parts = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        parts[lo:hi] = video_centres[video_of_row[lo:hi]] + SCENE_SPREAD * _unit_noise(rng, hi - lo)
    # re-takes: a later scene repeats an earlier scene of its video with a small change
    retake = (scene_in_video > 0) & (rng.random(n) < RETAKE_SHARE)
    rows = np.flatnonzero(retake)
    source = rows - 1 - (rng.random(len(rows)) * scene_in_video[rows]).astype(np.int64)  # an earlier scene, same video
    parts[rows] = normalise(parts[source]) + RETAKE_SPREAD * _unit_noise(rng, len(rows))
    vectors = np.empty_like(parts)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        vectors[lo:hi] = _embed(mean, parts[lo:hi])
    return Catalogue(vectors, owner_of_row, video_of_row, scene_in_video, sizes, topics, owner_topics,
                     video_centres, video_owner, mean)


QUERY_KINDS = ("new_shot", "new_video", "other_subject")


def queries(cat: Catalogue, owner: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Held-out queries for ``owner``: never a stored point, a third of each kind.

    new_shot: another shot of one of the owner's videos ("more like this moment");
    new_video: a new video on one of the owner's subjects (a typical text/image query);
    other_subject: a video on a random subject, usually someone else's (the hard filter case).
    """
    own_videos = np.flatnonzero(cat.video_owner == owner)
    out = np.empty((count, DIM), dtype=np.float32)
    kinds = [QUERY_KINDS[i % 3] for i in range(count)]
    for i, kind in enumerate(kinds):
        if kind == "new_shot":
            centre = cat.video_centres[rng.choice(own_videos)]
        else:
            topic = (rng.choice(cat.owner_topics[owner]) if kind == "new_video"
                     else rng.integers(0, len(cat.topics)))
            centre = normalise(cat.topics[topic] + VIDEO_SPREAD * _unit_noise(rng, 1)[0])
        part = centre + SCENE_SPREAD * _unit_noise(rng, 1)[0]
        out[i] = _embed(cat.mean, part[None, :])[0]
    return out, kinds
