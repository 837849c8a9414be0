"""Run by tests/test_spawn_threads.py in a child process: sandboxed spawns while other threads hold locks.

A stand-in model loader holds a lock almost all the time (and the CLIP
singleton's lock too), another thread keeps importing modules, and an
at-fork hook takes the loader's lock, as a careless hook in some library
might. Python run in a child between fork and exec (a ``preexec_fn``) runs
that hook and hangs on the lock; a spawn that execs directly never runs it.
Several threads meanwhile probe and decode a video through the sandbox.

Prints ``spawns: N`` and exits 0 when every spawn finished; exits 3 (after
killing its children) when a spawning thread is still stuck at the bound.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from pathlib import Path

import psutil

from pipeline.clip import singleton
from pipeline.core.config import Settings
from pipeline.media.decode import decode_frame_at
from pipeline.media.probe import probe
from pipeline.media.reference import read_packet_index

SPAWNERS = 3
ROUNDS = 4
SPAWNS_PER_ROUND = 4  # two ffprobe runs in probe(), one for the packet index, one ffmpeg
BOUND_S = 120.0  # a hung spawn never finishes; a working one takes well under a second
_CHURNED_MODULES = ("colorsys", "calendar", "difflib", "textwrap", "shlex")

_loader_lock = threading.Lock()


def _hook_taking_a_lock() -> None:
    with _loader_lock:
        pass


def _load_model(stop: threading.Event) -> None:
    """Hold both locks nearly all the time, as a model loading in the background does."""
    while not stop.is_set():
        with _loader_lock, singleton._lock:
            time.sleep(0.002)
        time.sleep(0.0002)


def _import_modules(stop: threading.Event) -> None:
    while not stop.is_set():
        for name in _CHURNED_MODULES:
            sys.modules.pop(name, None)
            importlib.import_module(name)


def _spawn(video: Path, settings: Settings, done: list[int], errors: list[str]) -> None:
    try:
        for _ in range(ROUNDS):
            probe(video, settings)
            if read_packet_index(video, settings) is None:
                raise RuntimeError("no packet index")
            if decode_frame_at(video, 0.5, (64, 36), settings) is None:
                raise RuntimeError("no frame decoded")
            done.append(SPAWNS_PER_ROUND)
    except Exception as exc:  # noqa: BLE001 - reported by the parent test
        errors.append(repr(exc))


def main(video: Path) -> int:
    os.register_at_fork(after_in_child=_hook_taking_a_lock)
    settings = Settings()
    stop = threading.Event()
    busy = [threading.Thread(target=target, args=(stop,), daemon=True) for target in (_load_model, _import_modules)]
    done: list[int] = []
    errors: list[str] = []
    spawners = [threading.Thread(target=_spawn, args=(video, settings, done, errors), daemon=True)
                for _ in range(SPAWNERS)]
    for thread in busy + spawners:
        thread.start()
    deadline = time.monotonic() + BOUND_S
    for thread in spawners:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stop.set()
    hung = sum(thread.is_alive() for thread in spawners)
    if hung:
        print(f"hung: {hung} of {SPAWNERS} spawning threads still waiting on a child", flush=True)
        for child in psutil.Process().children(recursive=True):
            child.kill()
        os._exit(3)
    for thread in busy:
        thread.join(timeout=10)
    print(f"spawns: {sum(done)}", *errors, sep="\n", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
