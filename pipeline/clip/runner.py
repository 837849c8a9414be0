"""One daemon inference thread per loaded model, with deadlines.

Why a thread of our own: the caller must be able to give up on a forward
pass (per-scene timeout) without waiting for it, and a forward pass that
never returns must not keep the interpreter from exiting. The standard
``ThreadPoolExecutor`` joins its threads at exit, so a hung pass would hang
the process; this thread is a daemon. All forward passes of a model run on
its thread, one at a time, so the model is never used by two threads at once.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from pipeline.clip.errors import InferenceTimeout
from pipeline.clip.memory import share_one_malloc_arena

# A pass that misses its deadline D is waited for until HANG_FACTOR x D after
# it was submitted; if it is still not back, the thread counts as hung.
HANG_FACTOR = 5.0

# Every live inference thread, so the process can tell at exit whether a pass is still inside torch.
_threads: weakref.WeakSet[InferenceThread] = weakref.WeakSet()


def pass_in_progress() -> bool:
    """True while some inference thread is inside a forward pass (e.g. one abandoned after a timeout).

    Interpreter shutdown with such a thread still in torch aborts the process
    ("terminate called without an active exception", exit 134); callers that
    end the process then leave with ``os._exit`` instead.
    """
    return any(thread.busy for thread in list(_threads))


class InferenceThread:
    """Runs callables on one daemon thread; ``run`` waits with a deadline."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.hung = False
        self.busy = False
        share_one_malloc_arena()  # before the thread exists, so it gets no arena of its own
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        _threads.add(self)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            self.busy = True
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 -- delivered to the caller, who decides
                future.set_exception(exc)
            finally:
                self.busy = False

    def run(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """``fn()`` on the inference thread, back within ``timeout_s`` of now.

        Raises :class:`InferenceTimeout` when it is not. Before raising, a
        late pass is waited for up to the hang limit so that the next caller's
        deadline is not spent behind it; if it is still running then, the
        thread is marked hung (and told to exit if it ever returns).
        Exceptions raised by ``fn`` propagate.
        """
        if self.hung:
            raise InferenceTimeout(timeout_s, hung=True)
        future: Future = Future()
        self._jobs.put((fn, future))
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            pass
        if future.cancel():  # still queued behind another caller's pass
            raise InferenceTimeout(timeout_s, hung=False)
        try:
            future.exception(timeout=timeout_s * (HANG_FACTOR - 1))
        except FutureTimeout:
            self.hung = True
            self._jobs.put(None)
            raise InferenceTimeout(timeout_s, hung=True) from None
        raise InferenceTimeout(timeout_s, hung=False)

    def stop(self) -> None:
        """Let the thread exit once its queue is drained (used when the model is replaced)."""
        self._jobs.put(None)
