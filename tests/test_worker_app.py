"""The Celery app's delivery settings and the worker helpers (no broker needed)."""

from __future__ import annotations

import pytest

from pipeline.config import load_settings
from worker import app as worker_app
from worker import tasks


@pytest.fixture
def limits_settings():
    return load_settings({"VIDX_TASK_SOFT_TIME_LIMIT_S": "100", "VIDX_TASK_TIME_LIMIT_S": "120",
                          "CELERY_BROKER_URL": "redis://broker.example:6390/3"})


def test_delivery_settings(limits_settings) -> None:
    conf = worker_app.make_app(limits_settings).conf
    assert conf.broker_url == "redis://broker.example:6390/3"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 120)
    assert conf.worker_max_memory_per_child > 0
    assert conf.worker_hijack_root_logger is False


def test_visibility_timeout_outlasts_a_run_and_its_retry_countdown(limits_settings) -> None:
    conf = worker_app.make_app(limits_settings).conf
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > limits_settings.task_time_limit_s + worker_app.RETRY_BACKOFF_MAX_S


def test_reconciler_is_scheduled_for_beat(limits_settings) -> None:
    schedule = worker_app.make_app(limits_settings).conf.beat_schedule
    assert schedule["vidx-reconcile"]["task"] == tasks.RECONCILE_TASK
    assert schedule["vidx-reconcile"]["schedule"] < limits_settings.stale_after_s


def test_tasks_are_registered() -> None:
    assert {tasks.INDEX_TASK, tasks.RECONCILE_TASK} <= set(worker_app.app.tasks.keys())


@pytest.mark.parametrize(("concurrency", "cores", "expected"), [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1)])
def test_threads_per_child_share_the_cores(concurrency: int, cores: int, expected: int) -> None:
    assert worker_app.threads_per_child(concurrency, cores) == expected


def test_backoff_grows_and_is_capped() -> None:
    first, later = tasks.backoff_s(0), tasks.backoff_s(4)
    assert 0.5 < first < 2 < later
    assert tasks.backoff_s(50) <= worker_app.RETRY_BACKOFF_MAX_S * 1.2


def test_one_line_reasons() -> None:
    from pipeline.errors import BadInputError

    assert tasks.one_line(BadInputError("x.mp4: not a video\nmore")) == "x.mp4: not a video"
    assert tasks.one_line(ValueError("boom")) == "ValueError: boom"
    assert tasks.one_line(RuntimeError()) == "RuntimeError"


def test_celery_records_in_the_parent_get_the_task_ids() -> None:
    import logging

    from worker.logging import task_ids_of_record

    record = logging.LogRecord("celery.worker.strategy", logging.INFO, __file__, 1, "Task received", None, None)
    record.data = {"id": "t-1", "name": "vidx.index_video", "args": "['v-1']", "kwargs": "{'owner_id': 'o-1'}"}
    assert task_ids_of_record(record) == {"task_id": "t-1", "video_id": "v-1", "owner_id": "o-1"}
    record.data = {"id": "t-2", "name": "vidx.reconcile", "args": "()", "kwargs": "{}"}
    assert task_ids_of_record(record) == {"task_id": "t-2"}
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no task here", None, None)
    assert task_ids_of_record(plain) == {}
