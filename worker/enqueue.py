"""Queueing videos: one code path for ``vidx enqueue`` and the HTTP API.

Both create (or reset) the video's row as ``queued``, bumping its
generation, and then publish one Celery task per video to the broker their
settings name (the one :func:`worker.broker.ping_broker` checks); a broker
outage marks the row ``failed`` with the reason (nothing waits for a lost
message).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from kombu.exceptions import OperationalError as BrokerError

from pipeline import store
from pipeline.core.config import Settings, broker_url
from pipeline.core.errors import TransientError
from pipeline.intake.naming import canonical_source, video_id_for
from pipeline.intake.sources import check_local_file, check_url, is_url
from pipeline.store import videos
from worker.broker import shown_broker


def source_label(raw: str, settings: Settings) -> str:
    """Validate one PATH_OR_URL as far as the enqueuer can see it; return its stored (redacted) label.

    A URL whose scheme is not http(s), or whose host is a non-public IP
    literal (unless VIDX_ALLOW_PRIVATE_URLS), is refused here: nothing enqueued.
    """
    if is_url(raw, supported_only=False):
        check_url(raw, settings)
        return canonical_source(raw)
    check_local_file(Path(raw).expanduser())
    return canonical_source(raw)


def enqueue_sources(settings: Settings, sources: Mapping[str, str], owner_id: UUID) -> list[dict[str, Any]]:
    """Queue each (already validated) source once for ``owner_id``.

    ``sources`` maps the stored, redacted label to what the worker fetches (the
    full URL, which may hold a signature; it rides only in the task message).
    Each enqueue bumps the video's generation (a re-index requested while it
    runs is never dropped). Returns ``[{"video_id", "source", "task_id",
    "generation"}]``. A broker that cannot be reached raises
    :class:`TransientError` and marks that video ``failed`` with the reason,
    so no row waits for a message that was never sent.
    """
    from worker.app import app  # celery: worker.app builds the Celery app on import; only publishing needs it
    from worker.tasks import send_index_task  # celery: imports worker.app

    app.use_broker(broker_url(settings))  # the broker these settings name, as ping_broker checks it
    rows = []
    with store.connect(settings) as conn:
        for label, raw in sources.items():
            video_id = video_id_for(owner_id, label)
            fetch_url = raw if raw != label else None
            generation = videos.enqueue_video(
                conn, video_id=video_id, owner_id=owner_id, source=label, fetch_url=fetch_url
            )
            try:
                task_id = send_index_task(video_id, owner_id, fetch_url=fetch_url)
            except BrokerError as exc:
                # No message carries this request: say so in the row instead of leaving it queued forever.
                reason = f"enqueue failed: broker unavailable ({shown_broker(settings)}): {exc}"
                videos.fail_unclaimed(conn, video_id, reason[:2000])
                raise TransientError(reason) from None
            rows.append({"video_id": str(video_id), "source": label, "task_id": task_id, "generation": generation})
    return rows
