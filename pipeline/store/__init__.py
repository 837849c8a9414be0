"""PostgreSQL + pgvector storage: connections, migrations, writes, search, stats.

Everything the pipeline and the workers need goes through these functions;
the SQL contract (tables, the search RPCs) lives in ``infra/migrations``.
"""

from pipeline.core.types import EMBEDDING_DIM
from pipeline.store.connection import (
    PgvectorMissingError,
    connect,
    ensure_pgvector,
    open_connection,
    resolve_database_url,
)
from pipeline.store.migrations import migrate
from pipeline.store.scenes import replace_scenes
from pipeline.store.search import search_by_embedding, search_similar
from pipeline.store.stats import stats
from pipeline.store.videos import (
    STATUSES,
    VideoStatus,
    get_video,
    list_videos,
    set_video_status,
    upsert_video,
)

__all__ = [
    "EMBEDDING_DIM",
    "STATUSES",
    "PgvectorMissingError",
    "connect",
    "ensure_pgvector",
    "get_video",
    "list_videos",
    "migrate",
    "open_connection",
    "replace_scenes",
    "resolve_database_url",
    "search_by_embedding",
    "search_similar",
    "set_video_status",
    "stats",
    "upsert_video",
    "VideoStatus",
]
