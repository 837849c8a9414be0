"""Worker-side logging: structlog JSON, every task line tagged with its ids.

Celery is kept away from the root logger (``worker_hijack_root_logger`` off
and our own ``setup_logging`` handler), so Celery's own records go through
the same structlog formatter as ours. While a task runs, its task id, video
id and owner id sit in structlog's context variables, which the formatter
merges into every line, ours and Celery's alike: bound by the
``task_prerun`` / ``task_postrun`` signals connected here.
"""

from __future__ import annotations

import ast
import logging
from typing import Any

import structlog
from celery import signals

from pipeline.core.config import Settings
from pipeline.core.log import configure_logging
from worker.messages import INDEX_TASK


def configure_worker_logging(settings: Settings) -> None:
    """JSON lines on stderr unless ``VIDX_LOG_FORMAT=console`` asks otherwise."""
    fmt = "console" if settings.log_format == "console" else "json"
    configure_logging(fmt, settings.log_level)
    logging.captureWarnings(True)  # Python warnings (e.g. Celery's root warning) as JSON lines too
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None and not isinstance(handler.formatter, TaskRecordFormatter):
            handler.setFormatter(TaskRecordFormatter(handler.formatter))


class TaskRecordFormatter(logging.Formatter):
    """Tags Celery's own per-task records in the parent process with the task's ids.

    The parent logs "Task ... received" (and worker-lost errors) outside any
    task context; Celery attaches the request to such records as ``data``,
    so the ids are bound just while that record is formatted.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        ids = task_ids_of_record(record)
        if not ids or structlog.contextvars.get_contextvars().get("task_id"):
            return self.inner.format(record)
        with structlog.contextvars.bound_contextvars(**ids):
            return self.inner.format(record)


def _literal(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def task_ids_of_record(record: logging.LogRecord) -> dict[str, str]:
    """task_id, video_id, owner_id from a Celery record's request data, when it has some."""
    data = getattr(record, "data", None)
    if not isinstance(data, dict) or not data.get("id"):
        return {}
    ids = {"task_id": str(data["id"])}
    if data.get("args") or data.get("kwargs"):  # only the index task carries arguments: the video's ids
        args, kwargs = _literal(data.get("args")), _literal(data.get("kwargs"))
        if isinstance(kwargs, dict):
            if kwargs.get("video_id"):
                ids["video_id"] = str(kwargs["video_id"])
            if kwargs.get("owner_id"):
                ids["owner_id"] = str(kwargs["owner_id"])
        if "video_id" not in ids and isinstance(args, (list, tuple)) and args:
            ids["video_id"] = str(args[0])
    return ids


def bind_task_context(*, task_id: str | None, video_id: Any = None, owner_id: Any = None) -> None:
    """Start a task's log context (replacing whatever a previous task left)."""
    structlog.contextvars.clear_contextvars()
    ids = {"task_id": task_id, "video_id": video_id, "owner_id": owner_id}
    structlog.contextvars.bind_contextvars(**{k: str(v) for k, v in ids.items() if v is not None})


def bind_owner(owner_id: Any) -> None:
    """Fill in the owner once the video row has told us (older messages may lack it)."""
    structlog.contextvars.bind_contextvars(owner_id=str(owner_id))


def clear_task_context() -> None:
    structlog.contextvars.clear_contextvars()


@signals.task_prerun.connect
def _bind_log_context(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any):
    """Every line a task emits carries its ids (the index task's video and owner too)."""
    kwargs = kwargs or {}
    args = args or ()
    if task is not None and task.name == INDEX_TASK:
        video_id = kwargs.get("video_id") or (args[0] if args else None)
        bind_task_context(task_id=task_id, video_id=video_id, owner_id=kwargs.get("owner_id"))
    else:
        bind_task_context(task_id=task_id)


@signals.task_postrun.connect
def _clear_log_context(**_: Any) -> None:
    clear_task_context()
