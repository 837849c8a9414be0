"""vidx processing library: one package per stage, the orchestration on top (docs/architecture.md).

Stages: intake (where a video comes from), media (ffprobe/ffmpeg, sandboxed),
shots (scene detection), frames (quality, kept frames, contact sheets), clip
(embeddings, labels), storage (frames and sidecars), store (PostgreSQL), jobs
(a run's life); core underneath all. ``indexer`` and ``reembed`` on top.
Pure library code: no Celery, click or FastAPI here (``worker/`` builds on
this, never the reverse).
"""
