"""Settings -> a loaded :class:`ClipModel` (open_clip), or an error saying why not.

No network when ``CLIP_CHECKPOINT`` is set: the weights come from that file.
A model architecture open_clip does not ship can be described by a config
JSON named ``<CLIP_MODEL_NAME>.json`` next to the checkpoint (open_clip's own
config format); it is registered with ``open_clip.add_model_config``. Without a
checkpoint, the ``CLIP_PRETRAINED`` tag is downloaded once into
``CLIP_CACHE_DIR``. The tag also tells which activation (QuickGELU) and
normalisation those weights expect, so it is honoured with a checkpoint too.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.clip.backends import TORCH, choose_backend
from pipeline.clip.backends.runtime_tower import load_runtime_tower
from pipeline.clip.errors import MODEL_LOAD_PREFIX, ClipUnavailableError
from pipeline.clip.frames import weights_label
from pipeline.clip.lean_load import LeanLoadUnsupported, load_image_tower, open_clip_create_kwargs
from pipeline.clip.memory import release_free_memory
from pipeline.clip.model import ClipModel
from pipeline.clip.runner import InferenceThread
from pipeline.clip.weights_source import check_weights_available
from pipeline.core.config import Settings
from pipeline.core.errors import always_propagate, first_line
from pipeline.core.log import get_logger
from pipeline.core.types import EMBEDDING_DIM

log = get_logger(__name__)

_registered_configs: set[Path] = set()


class _QuietOpenClipInfo(logging.Filter):
    """open_clip logs every loading step at INFO on the root logger; keep its warnings and errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "open_clip" not in record.pathname


if not any(isinstance(f, _QuietOpenClipInfo) for f in logging.getLogger().filters):
    logging.getLogger().addFilter(_QuietOpenClipInfo())


def resolve_device(requested: str) -> str:
    """``cpu``/``cuda``/``auto`` -> the device to use; ``cuda`` without CUDA is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ClipUnavailableError(f"{MODEL_LOAD_PREFIX}CLIP_DEVICE=cuda but CUDA is not available")
    return requested


def _register_config_next_to_checkpoint(settings: Settings) -> None:
    import open_clip  # open_clip (+torchvision): not loaded on the exported-backend path

    if settings.clip_checkpoint is None:
        return
    config = Path(settings.clip_checkpoint).parent / f"{settings.clip_model_name}.json"
    if config.is_file() and config not in _registered_configs:
        open_clip.add_model_config(config)
        _registered_configs.add(config)


def _check_model_name(name: str) -> None:
    import open_clip  # open_clip (+torchvision): not loaded on the exported-backend path

    if name.startswith(("hf-hub:", "local-dir:")):
        return
    if open_clip.get_model_config(name) is None:
        raise ClipUnavailableError(
            f"{MODEL_LOAD_PREFIX}unknown model name {name!r} (CLIP_MODEL_NAME must be an open_clip architecture, "
            f"see open_clip.list_models(), or have {name}.json next to CLIP_CHECKPOINT)"
        )


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str):
    """open_clip's tokenizer for ``name``; stateless, so shared by reloads of the same model."""
    import open_clip  # open_clip (+torchvision): not loaded on the exported-backend path

    return open_clip.get_tokenizer(name)


def _embedding_width(
    encode: Callable[[torch.Tensor], torch.Tensor], input_size: tuple[int, int], device: str, dtype: torch.dtype
) -> int:
    """Width of the image embedding, measured by one forward pass on a blank image (also a warm-up)."""
    with torch.inference_mode():
        blank = torch.zeros(1, 3, *input_size, device=device, dtype=dtype)
        return int(encode(blank).shape[-1])


def _runtime_image_tower(
    settings: Settings, name: str, backend: str
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], dict[str, Any]] | None:
    """The image tower on ONNX Runtime / OpenVINO (exported and cached at first use), or None to use torch."""
    try:
        return load_runtime_tower(settings, backend)
    except (ImportError, OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("clip_backend_unavailable_using_torch", backend=backend, model=name,
                    error=f"{type(exc).__name__}: {first_line(exc)}")
        return None


def _lean_image_tower(
    settings: Settings, name: str, device: str, precision: str, create_kwargs: dict[str, Any]
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], dict[str, Any]] | None:
    """The checkpoint's image tower without a second copy of its weights, or None to load the usual way."""
    if settings.clip_checkpoint is None:
        return None
    try:
        return load_image_tower(Path(settings.clip_checkpoint), name, device, precision, create_kwargs)
    except LeanLoadUnsupported as exc:
        log.info("clip_lean_load_unsupported", model=name, reason=first_line(exc))
        return None


def load_clip(settings: Settings, device: str | None = None, *, text: bool = True) -> ClipModel:
    """Load the model ``settings`` describe; ``text=False`` keeps only the image tower.

    Raises :class:`ClipUnavailableError` ("Model load failed: ...").
    """
    try:
        return _load(settings, device, text)
    except ClipUnavailableError:
        raise
    except always_propagate():  # e.g. a soft time limit: not a load failure, so never cached as one
        raise
    except Exception as exc:  # open_clip/torch raise many types; the reason is what matters
        raise ClipUnavailableError(f"{MODEL_LOAD_PREFIX}{type(exc).__name__}: {first_line(exc)}") from exc


def _load(settings: Settings, device: str | None, text: bool) -> ClipModel:
    start = time.perf_counter()
    device = device or resolve_device(settings.clip_device)
    if settings.clip_cpu_threads:
        torch.set_num_threads(settings.clip_cpu_threads)
    name = settings.clip_model_name
    check_weights_available(settings)  # offline: one clear error in seconds, not a minute of retries
    precision = "fp16" if device == "cuda" else "fp32"
    backend = choose_backend(settings.clip_backend, device) if not text else TORCH
    # an exported backend needs neither open_clip nor torchvision in this process (~0.24 GB of RSS)
    tower = _runtime_image_tower(settings, name, backend) if backend != TORCH else None
    if tower is None:
        import open_clip  # open_clip (+torchvision): not loaded on the exported-backend path

        backend = TORCH
        _register_config_next_to_checkpoint(settings)
        _check_model_name(name)
        create_kwargs = open_clip_create_kwargs(name, settings.clip_pretrained)
        tower = _lean_image_tower(settings, name, device, precision, create_kwargs) if not text else None
    if tower is not None:  # a worker: the image tower only, on its backend (pipeline/clip/backends/) or memory-mapped
        kept, transform, preprocess_cfg = tower
        image_encoder, text_encoder = kept, None
    else:
        model, _, transform = open_clip.create_model_and_transforms(
            name,
            pretrained=weights_label(settings),
            device=device,
            precision=precision,
            cache_dir=str(settings.clip_cache_dir),
            **create_kwargs,
            require_pretrained=True,
        )
        model.eval()
        preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
        image_encoder, text_encoder, kept = model.encode_image, model.encode_text, model
        if not text and type(model) in (open_clip.CLIP, open_clip.CustomTextCLIP):
            # their encode_image is exactly visual(x); drop every reference to the text tower
            kept = model.visual
            image_encoder, text_encoder = model.visual, None
            del model
    size = preprocess_cfg.get("size", 224)
    input_size = (size, size) if isinstance(size, int) else tuple(size)
    dtype = next(iter(kept.parameters()), torch.zeros(0)).dtype  # a runtime tower has no torch parameters: fp32

    width = _embedding_width(image_encoder, input_size, device, dtype)
    if width != EMBEDDING_DIM:
        raise ClipUnavailableError(
            f"{MODEL_LOAD_PREFIX}{name} makes {width}-d embeddings but the database column is "
            f"vector({EMBEDDING_DIM}); use a {EMBEDDING_DIM}-d model"
        )

    release_free_memory()  # the checkpoint's state dict and any dropped tower

    load_ms = (time.perf_counter() - start) * 1000.0
    loaded = ClipModel(
        model=kept,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        transform=transform,
        tokenizer=_tokenizer(name) if text_encoder is not None else None,
        model_name=name,
        pretrained=weights_label(settings),
        device=device,
        dtype=dtype,
        embed_dim=width,
        input_size=min(input_size),
        interpolation=str(preprocess_cfg.get("interpolation", "bicubic")),
        load_time_ms=load_ms,
        runner=InferenceThread(name=f"clip-inference-{name}"),
        make_cpu_twin=(lambda: load_clip(settings, device="cpu", text=text)) if device != "cpu" else None,
    )
    if settings.clip_debug_log:
        log.info("clip_model_loaded", model=name, pretrained=loaded.pretrained, device=device, backend=backend,
                 precision=precision, embed_dim=width, text_tower=loaded.has_text, load_ms=round(load_ms, 1))
    return loaded
