"""Give freed heap memory back to the OS after a model load or a video's embeddings.

Loading a checkpoint briefly holds the weights twice (the file's state dict
and the model), and dropping the text tower frees ~250 MB; glibc keeps most
of such freed memory in its heap, so a long-lived worker's RSS would stay at
its peak. ``malloc_trim(0)`` returns it. A no-op where glibc is not the libc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_libc = None
try:
    _name = ctypes.util.find_library("c")
    if _name:
        _libc = ctypes.CDLL(_name)
        _libc.malloc_trim  # noqa: B018 - raises AttributeError where it does not exist (musl, macOS)
except (OSError, AttributeError):
    _libc = None


def release_free_memory() -> None:
    """Collect garbage, then return free heap pages to the OS (glibc only)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def share_one_malloc_arena() -> None:
    """Make every thread allocate from glibc's main heap (no per-thread arenas).

    Inference runs on its own thread (so a hung pass can be abandoned); with
    glibc's default a new thread gets a fresh malloc arena whose pages stay
    resident, about 30 MB for ViT-B-32. One shared arena costs nothing here:
    the inference thread is the only one allocating much. No-op off glibc.
    """
    if _libc is not None and hasattr(_libc, "mallopt"):
        _libc.mallopt(_M_ARENA_MAX, 1)
