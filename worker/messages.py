"""What vidx puts on the broker: the task names, and how each task's message is sent.

Apart from the task definitions (``worker/tasks.py``, which imports the
Celery app) so that the app's own reconciler can send without importing
them. A message is sent by task name; the worker that receives it runs the
task registered under that name.
"""

from __future__ import annotations

from uuid import UUID

from celery import Celery

from pipeline.core.redaction import redact_url
from pipeline.jobs.retry import PUBLISH_RETRY_POLICY

INDEX_TASK = "vidx.index_video"
RECONCILE_TASK = "vidx.reconcile"
REEMBED_TASK = "vidx.reembed_video"


def send_index(app: Celery, video_id: UUID, owner_id: UUID, fetch_url: str | None = None) -> str:
    """Publish one indexing task; its id.

    ``fetch_url`` (a URL holding credentials) rides in the message only; the
    message's displayed kwargs (events, ``celery inspect``) show it redacted.
    """
    kwargs = {"owner_id": str(owner_id)}
    shown = dict(kwargs)
    if fetch_url:
        kwargs["fetch_url"] = fetch_url
        shown["fetch_url"] = redact_url(fetch_url)
    return _publish(app, INDEX_TASK, [str(video_id)], kwargs, kwargsrepr=repr(shown))


def send_reembed(app: Celery, video_id: UUID) -> str:
    """Publish one re-embedding task; its id."""
    return _publish(app, REEMBED_TASK, [str(video_id)], {})


def _publish(app: Celery, name: str, args: list[str], kwargs: dict[str, str], **options: str) -> str:
    """Send on the app's queue (``worker/app.py``), with a few quick retries if the broker blips."""
    result = app.send_task(name, args=args, kwargs=kwargs, queue=app.conf.task_default_queue, retry=True,
                           retry_policy=PUBLISH_RETRY_POLICY, **options)
    return str(result.id)
