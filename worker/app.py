"""The Celery app: delivery guarantees, the reconciler timer, per-child set-up, logging hooks.

Delivery is at-least-once and made safe by the tasks themselves (claim in
the database, scenes replaced in one transaction), so the settings here aim
at never losing a job: a message is acknowledged only after its task ends
(late acks), put back when the child running it dies (reject on worker
lost), and each child takes one message at a time (prefetch 1). Redis puts
an unacknowledged message back after the visibility timeout, which must be
longer than any legitimate run (hard time limit plus the longest retry
countdown), or a slow job would be duplicated while still running. These
delivery flags are set here and nowhere else.

The broker is the one :func:`pipeline.core.config.broker_url` names, and only
that one: Celery on its own prefers ``CELERY_BROKER_URL`` (and
``CELERY_BROKER_READ_URL``/``_WRITE_URL``) from the environment over its
configuration, which would drop ``VIDX_BROKER_PASSWORD`` (:class:`VidxCelery`).

A dead run is found by its lease, not by the visibility timeout: every
worker runs the reconciler on a timer (:class:`Reconciler`, a worker
bootstep), which requeues videos whose lease expired.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from functools import partial
from typing import Any

from billiard.process import current_process
from celery import Celery, bootsteps, signals

from pipeline.core.config import Settings, broker_url, load_settings, redelivery_after_s
from pipeline.core.log import get_logger
from pipeline.jobs import open_job_connection, reconcile, sweep_leftovers
from worker.broker import QUEUE
from worker.logging import configure_worker_logging
from worker.messages import send_index

# Guard against leaks (decoder buffers, torch caches): a child above this
# resident size is replaced after its current task. CLIP ViT-B-32 on CPU is
# about 1 GiB resident.
MAX_MEMORY_PER_CHILD_KIB = 3 * 1024 * 1024


def visibility_timeout_s(settings: Settings) -> int:
    """Longer than any legitimate run: hard limit + longest retry countdown + slack."""
    return redelivery_after_s(settings)


class Reconciler(bootsteps.StartStopStep):
    """Every worker sweeps leftovers at start, then requeues dead runs every ``VIDX_RECONCILE_INTERVAL_S``.

    It runs on a thread of the worker's main process, not as a task: with
    every pool child busy on a long video, a queued reconcile task would
    wait behind them. Reconcilers of several workers take rows with SKIP
    LOCKED, so they never requeue the same video twice.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        self._thread = threading.Thread(target=self._loop, name="vidx-reconciler", daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()

    def _loop(self) -> None:
        log = get_logger("vidx.worker")
        first = True
        while True:
            try:
                with open_job_connection(settings) as conn:
                    if first:
                        sweep_leftovers(conn, settings)
                        first = False
                    reconcile(conn, settings, partial(send_index, app))
            except Exception as exc:  # noqa: BLE001 -- database or broker down: try again next tick
                log.warning("reconcile_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            if self._stop.wait(settings.reconcile_interval_s):
                return


class VidxCelery(Celery):
    """A Celery app whose every broker connection goes to the URL vidx decided.

    Celery's ``conf.broker_url`` (and its read/write twins) is a property that
    returns the environment's ``CELERY_BROKER_URL`` before any configuration.
    Every connection Celery opens (worker consumer, publisher pool, banner)
    asks :meth:`connection_for_read`, :meth:`connection_for_write` or
    :meth:`connection` for it, so those three name the URL instead.
    """

    def __init__(self, main: str, *, broker: str, **kwargs: Any) -> None:
        super().__init__(main, **kwargs)
        self._broker = broker
        self.conf.update(broker_url=broker, broker_read_url=broker, broker_write_url=broker)

    @property
    def broker(self) -> str:
        """The URL every connection of this app goes to (may hold the password: never log it)."""
        return self._broker

    def use_broker(self, url: str) -> None:
        """Publish to ``url`` from now on: the API may serve settings other than the environment's.

        The next publish opens (or reuses) kombu's pool for the new URL.
        """
        if url == self._broker:
            return
        self._broker = url
        self.conf.update(broker_url=url, broker_read_url=url, broker_write_url=url)
        self._pool = None
        self.amqp._producer_pool = None

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_read(url or self._broker, **kwargs)

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_write(url or self._broker, **kwargs)

    def connection(self, hostname: str | None = None, *args: Any, **kwargs: Any) -> Any:
        return super().connection(hostname or self._broker, *args, **kwargs)

    broker_connection = connection  # Celery's old alias, bound to its own method otherwise


def make_app(settings: Settings) -> VidxCelery:
    """A Celery app configured from ``settings`` (no side effects beyond the app)."""
    celery_app = VidxCelery("vidx", broker=broker_url(settings), include=["worker.tasks"])
    celery_app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # job state lives in the videos table
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A failed job is recorded in its row; a timed-out (killed) one keeps its row running
        # until its lease expires, then the reconciler requeues it.
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        broker_connection_retry_on_startup=True,
        worker_max_memory_per_child=MAX_MEMORY_PER_CHILD_KIB,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    celery_app.steps["worker"].add(Reconciler)
    return celery_app


settings: Settings = load_settings()
app = make_app(settings)

# --- per-process state -------------------------------------------------------

_worker_concurrency: int | None = None
_child_settings: Settings | None = None


def worker_settings() -> Settings:
    """Settings for task code: in a worker child, with its torch thread share applied."""
    return _child_settings or settings


def cuda_device_count() -> int:
    """GPUs visible, counted in a throw-away process so this one never initialises CUDA.

    CUDA does not survive fork: the parent of the prefork pool must not touch it.
    """
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
        return int(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return 0


def claim_gpus() -> int:
    """Before the pool forks: with CLIP on a GPU and no ``VIDX_WORKER_GPUS``, give the children every visible GPU.

    Returns how many GPUs were found that way (0: none, CPU, or the operator
    chose them), so ``vidx worker`` can run one child per GPU. The children
    inherit this process's :data:`settings`.
    """
    global settings
    if not settings.clip_enabled or settings.clip_device == "cpu" or settings.worker_gpus:
        return 0
    count = cuda_device_count()
    if count:
        settings = settings.with_overrides(worker_gpus=tuple(str(i) for i in range(count)))
    return count


def threads_per_child(concurrency: int, cores: int | None = None) -> int:
    """Each child's share of the cores, so children do not oversubscribe the CPU."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, concurrency))


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Our handler replaces Celery's logging set-up entirely (root logger untouched by Celery)."""
    configure_worker_logging(settings)


@signals.celeryd_init.connect
def _worker_init(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """First hook of a starting worker: JSON logging before Celery says anything, and its concurrency."""
    global _worker_concurrency
    configure_worker_logging(settings)
    _worker_concurrency = getattr(instance, "concurrency", None)


@signals.worker_process_init.connect
def _init_child(**_: Any) -> None:
    """Runs in each pool child after fork: its thread share and, on GPU hosts, its GPU.

    The CLIP model itself is loaded lazily by the first task that needs it,
    in this child, never in the parent.
    """
    global _child_settings
    configure_worker_logging(settings)
    concurrency = _worker_concurrency or app.conf.worker_concurrency or os.cpu_count() or 1
    threads = settings.clip_cpu_threads or threads_per_child(concurrency)
    # Scene decoding gets the same share: C children each starting one ffmpeg per core would oversubscribe.
    _child_settings = settings.with_overrides(
        clip_cpu_threads=threads, decode_processes=settings.decode_processes or threads_per_child(concurrency)
    )
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass
    gpus = settings.worker_gpus
    if settings.clip_device != "cpu" and gpus:
        # One child per GPU: pin this child to "its" GPU before torch sees CUDA.
        index = getattr(current_process(), "index", 0) or 0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
