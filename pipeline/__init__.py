"""vidx processing library: probe, decode, scenes, frame ranking, CLIP, storage.

Pure library code: no Celery here (``worker/`` builds on this, never the reverse).
"""
