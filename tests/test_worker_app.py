"""The Celery app's delivery settings and the worker helpers (no broker needed)."""

from __future__ import annotations

import os

import pytest

from pipeline.core.config import RETRY_BACKOFF_MAX_S, broker_url, load_settings, recovery_bound_s
from pipeline.jobs import retry
from worker import app as worker_app
from worker import tasks


@pytest.fixture
def limits_settings():
    return load_settings({"VIDX_TASK_SOFT_TIME_LIMIT_S": "100", "VIDX_TASK_TIME_LIMIT_S": "120",
                          "CELERY_BROKER_URL": "redis://broker.example:6390/3"})


def _connection_urls(celery_app) -> set[str]:
    """Where every kind of connection Celery opens would go (the consumer's, the publisher's, the banner's)."""
    connections = (celery_app.connection_for_read(), celery_app.connection_for_write(), celery_app.connection())
    return {c.as_uri(include_password=True) for c in connections}


def test_delivery_settings(limits_settings) -> None:
    celery_app = worker_app.make_app(limits_settings)
    conf = celery_app.conf
    assert _connection_urls(celery_app) == {"redis://broker.example:6390/3"}
    assert celery_app.pool.connection.as_uri(include_password=True) == "redis://broker.example:6390/3"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 120)
    assert conf.worker_max_memory_per_child > 0
    assert conf.worker_hijack_root_logger is False


@pytest.mark.parametrize("variable", ["CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"])
def test_the_environment_cannot_redirect_the_app(monkeypatch, variable: str) -> None:
    """Celery reads these before its configuration; vidx's URL, password included, wins anyway (issue 26)."""
    monkeypatch.setenv(variable, "redis://elsewhere.example:6379/0")
    settings = load_settings({"CELERY_BROKER_URL": "redis://broker.example:6390/3", "VIDX_BROKER_PASSWORD": "p w"})
    celery_app = worker_app.make_app(settings)
    assert _connection_urls(celery_app) == {broker_url(settings)} == {"redis://:p%20w@broker.example:6390/3"}
    connection = celery_app.connection_for_write()
    assert (connection.hostname, connection.password) == ("broker.example", "p w")


def test_an_enqueuer_with_other_settings_publishes_to_their_broker() -> None:
    celery_app = worker_app.make_app(load_settings({"CELERY_BROKER_URL": "redis://first.example:6379/0"}))
    assert celery_app.pool.connection.hostname == "first.example"
    celery_app.use_broker("redis://second.example:6379/1")
    assert _connection_urls(celery_app) == {"redis://second.example:6379/1"}
    assert celery_app.pool.connection.hostname == "second.example"


def test_visibility_timeout_outlasts_a_run_and_its_retry_countdown(limits_settings) -> None:
    conf = worker_app.make_app(limits_settings).conf
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > limits_settings.task_time_limit_s + RETRY_BACKOFF_MAX_S


def test_every_worker_runs_the_reconciler_on_a_timer(limits_settings) -> None:
    celery_app = worker_app.make_app(limits_settings)
    assert worker_app.Reconciler in celery_app.steps["worker"]
    assert not celery_app.conf.beat_schedule  # no separate beat service is needed


def test_recovery_bound_of_the_shipped_defaults_is_under_two_minutes() -> None:
    assert recovery_bound_s(load_settings({})) < 120


def test_tasks_are_registered() -> None:
    assert {tasks.INDEX_TASK, tasks.RECONCILE_TASK} <= set(worker_app.app.tasks.keys())


@pytest.mark.parametrize(("concurrency", "cores", "expected"), [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1)])
def test_threads_per_child_share_the_cores(concurrency: int, cores: int, expected: int) -> None:
    assert worker_app.threads_per_child(concurrency, cores) == expected


def test_backoff_grows_and_is_capped() -> None:
    """Celery's formula, full jitter: each countdown lies in [0, min(cap, 2**retries)]."""
    assert all(0 <= retry.retry_countdown(0) <= 1 for _ in range(20))
    assert all(0 <= retry.retry_countdown(4) <= 16 for _ in range(20))
    assert max(retry.retry_countdown(50) for _ in range(50)) <= RETRY_BACKOFF_MAX_S


def test_busy_video_is_looked_at_again_just_after_the_lease_would_expire() -> None:
    assert retry.busy_countdown(10.0) == 11.0
    assert retry.busy_countdown(None) == retry.BUSY_MIN_DELAY_S
    assert retry.busy_countdown(10_000.0) == retry.BUSY_MAX_DELAY_S


def test_one_line_reasons() -> None:
    from pipeline.core.errors import BadInputError

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


@pytest.mark.parametrize(("configured", "expected"), [({}, 2), ({"VIDX_DECODE_PROCESSES": "3"}, 3)])
def test_each_pool_child_decodes_with_its_share_of_the_cores(monkeypatch, configured, expected) -> None:
    """Two children on four cores: two decoding processes each, unless VIDX_DECODE_PROCESSES says otherwise."""
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    monkeypatch.setattr(worker_app, "settings", load_settings(configured))
    monkeypatch.setattr(worker_app, "configure_worker_logging", lambda *_: None)
    monkeypatch.setattr(worker_app, "_worker_concurrency", 2)
    monkeypatch.setattr(worker_app.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(worker_app, "_child_settings", None)
    try:
        worker_app._init_child()
        assert worker_app._child_settings.clip_cpu_threads == 2
        assert worker_app._child_settings.decode_processes == expected
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize(("configured", "found", "children", "gpus"), [
    ({"CLIP_DEVICE": "cuda"}, 2, 2, ("0", "1")),
    ({"CLIP_DEVICE": "cuda", "VIDX_WORKER_GPUS": "3,5"}, 2, 0, ("3", "5")),  # the operator's choice stands
    ({"CLIP_DEVICE": "cpu"}, 2, 0, None),
])
def test_a_gpu_worker_claims_every_visible_gpu_unless_told(monkeypatch, configured, found, children, gpus) -> None:
    monkeypatch.setattr(worker_app, "settings", load_settings(configured))
    monkeypatch.setattr(worker_app, "cuda_device_count", lambda: found)
    assert worker_app.claim_gpus() == children
    assert worker_app.settings.worker_gpus == gpus


def test_each_pool_child_is_pinned_to_its_gpu(monkeypatch) -> None:
    cv2 = pytest.importorskip("cv2")
    monkeypatch.setattr(worker_app, "settings", load_settings({"CLIP_DEVICE": "cuda", "VIDX_WORKER_GPUS": "3,5"}))
    monkeypatch.setattr(worker_app, "configure_worker_logging", lambda *_: None)
    monkeypatch.setattr(worker_app, "_worker_concurrency", 2)
    monkeypatch.setattr(worker_app, "_child_settings", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(worker_app, "current_process", lambda: type("Child", (), {"index": 1})())
    before = cv2.getNumThreads()
    try:
        worker_app._init_child()
    finally:
        cv2.setNumThreads(before)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
