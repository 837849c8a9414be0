"""A checkpoint's image tower without a second copy of the weights (the worker's load path).

Why: open_clip builds the whole model with random weights, then reads the
whole checkpoint into memory and copies it in: for ViT-B-32 that is ~0.6 GB
of random weights plus ~0.6 GB of state dict at once, a 2 GB peak RSS for a
process that keeps ~0.35 GB of image tower. Here the model is built on the
``meta`` device (no memory, no random init), the checkpoint is memory-mapped
(``torch.load(mmap=True)``; safetensors read tensor by tensor) and only the
``visual.*`` tensors are assigned into the tower, without copying when dtype
and device already match. Text-tower pages of the file are never touched. open_clip is imported only
when a function here is called.

The mapped pages are the file's own (page cache): they count in RSS only
once read, are shared by every worker process on the machine, and the kernel
can drop them under pressure. Replace a checkpoint by renaming a new file
over it, never by rewriting it in place, while workers run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from pipeline.core.log import get_logger

log = get_logger(__name__)

VISUAL_PREFIX = "visual."
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def open_clip_create_kwargs(name: str, pretrained: str) -> dict[str, Any]:
    """What the pretrained tag says about its weights: activation (QuickGELU) and image normalisation."""
    import open_clip  # open_clip (+torchvision): not loaded on the exported-backend path

    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    return {
        "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
        **{f"image_{k}": tag_cfg[k] for k in _PREPROCESS_KEYS if k in tag_cfg},
    }


class _NoRandomInitWarning(logging.Filter):
    """open_clip warns "Model initialized randomly" for a weightless build; here the weights follow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def _no_random_init_warning() -> Iterator[None]:
    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


class LeanLoadUnsupported(Exception):
    """This model or checkpoint needs open_clip's own (full-copy) loading path."""


def _mapped_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """The checkpoint's tensors without reading them: mmapped (.pt zip) or lazily read (.safetensors)."""
    if path.suffix == ".safetensors":
        return _SafetensorsView(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:  # e.g. a legacy (non-zip) torch file cannot be mapped
        raise LeanLoadUnsupported(f"cannot memory-map {path.name}: {exc}") from exc
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise LeanLoadUnsupported(f"{path.name} is not a state dict")
    if next(iter(checkpoint)).startswith("module."):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return checkpoint


class _SafetensorsView(Mapping[str, torch.Tensor]):
    """A read-only mapping that reads one tensor per lookup (never the whole file at once)."""

    def __init__(self, path: Path) -> None:
        self._file = safe_open(str(path), framework="pt", device="cpu")
        self._keys = list(self._file.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def describe_model(
    name: str, precision: str, create_kwargs: dict[str, Any]
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], dict[str, Any]]:
    """(the model on ``meta``: shapes and dtypes, no memory; eval transform; preprocess cfg)."""
    import open_clip  # open_clip (+torchvision): not loaded on the exported-backend path

    with torch.device("meta"), _no_random_init_warning():
        model, _, transform = open_clip.create_model_and_transforms(
            name, pretrained=None, load_weights=False, device="meta", precision=precision, **create_kwargs
        )
    if not isinstance(model, open_clip.CLIP | open_clip.CustomTextCLIP):
        raise LeanLoadUnsupported(f"{type(model).__name__} models load through open_clip")
    return model, transform, open_clip.get_model_preprocess_cfg(model)


def load_image_tower(
    checkpoint: Path, name: str, device: str, precision: str, create_kwargs: dict[str, Any]
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], dict[str, Any]]:
    """(image tower with the checkpoint's weights, eval transform, preprocess cfg).

    ``create_kwargs`` are the ``open_clip.create_model_and_transforms`` keyword
    arguments the full path would use (activation, normalisation), so the
    tower and transform are the same. Raises :class:`LeanLoadUnsupported` when
    the checkpoint or architecture needs open_clip's own loading.
    """
    from open_clip.convert import convert_state_dict  # open_clip: only for a checkpoint loaded lean
    from open_clip.model import resize_pos_embed

    model, transform, preprocess_cfg = describe_model(name, precision, create_kwargs)
    wanted = model.visual.state_dict()  # type: ignore[union-attr]  # meta tensors: each key's shape and dtype, no memory

    state = _mapped_state_dict(checkpoint)
    if not any(k.startswith(VISUAL_PREFIX) for k in state):
        state = dict(convert_state_dict(model, dict(state)))  # a third-party layout: open_clip renames it
    visual = {k: state[k] for k in state if k.startswith(VISUAL_PREFIX)}
    resize_pos_embed(visual, model)  # only when the checkpoint's grid differs from the model's
    tower: torch.nn.Module = model.visual  # type: ignore[assignment]  # open_clip is untyped
    del model, state  # the text tower never existed beyond meta; its file pages were never read

    tensors = {}
    for key, meta in wanted.items():
        source = visual.get(VISUAL_PREFIX + key)
        if source is None:
            raise LeanLoadUnsupported(f"checkpoint has no {VISUAL_PREFIX}{key}")
        tensors[key] = source.to(device=device, dtype=meta.dtype)  # no copy when both already match
    tower.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in chain(tower.parameters(), tower.buffers())):
        raise LeanLoadUnsupported(f"{name}'s image tower has state the checkpoint does not hold")
    tower.eval()
    return tower, transform, preprocess_cfg
