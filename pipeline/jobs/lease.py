"""A running job's heartbeat: renews its lease in the video row until the job ends.

Runs on a daemon thread with its own database connection, so a job busy in
ffmpeg or torch keeps its lease, and a job whose process dies stops renewing
at once (the reconciler requeues the video when the lease expires). A
renewal that finds the lease gone (expired and taken over) sets ``lost``;
the job's final write is fenced by the lease anyway, so a lost run changes
nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from types import TracebackType

import psycopg

from pipeline.core.config import Settings
from pipeline.core.errors import VidxError, one_line
from pipeline.core.log import get_logger
from pipeline.store.connection import connect
from pipeline.store.videos import Lease, renew_lease

log = get_logger("vidx.lease")


def new_holder(kind: str) -> str:
    """A lease holder token: what runs the job, where, and a run id (never reused)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Renews ``lease`` every ``settings.heartbeat_s`` while the context is open."""

    def __init__(self, lease: Lease, settings: Settings) -> None:
        self.lease = lease
        self.settings = settings
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.video_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.heartbeat_s + 5)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                if conn is None or conn.closed:
                    conn = connect(self.settings)
                if not renew_lease(conn, self.lease, self.settings.lease_s):
                    self.lost = True
                    log.error("lease_lost", video_id=str(self.lease.video_id), holder=self.lease.holder)
                    break
            except (psycopg.Error, VidxError) as exc:  # the database may be down: keep trying until the job ends
                log.warning("lease_not_renewed", video_id=str(self.lease.video_id), error=one_line(exc))
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()
