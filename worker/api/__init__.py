"""``vidx serve``: the HTTP adapter over the pipeline's store and CLIP search (FastAPI).

Everything here translates HTTP to calls of ``pipeline`` and back; no
indexing or search logic lives in this package. See docs/api.md.
"""

from worker.api.app import create_app

__all__ = ["create_app"]
