"""Configuration: every variable parsed once; bad values fail naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.config import broker_url, describe_settings, load_settings
from pipeline.core.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    s = load_settings({})
    assert s.clip_enabled is True
    assert s.clip_model_name == "ViT-B-32"
    assert s.clip_pretrained == "openai"
    assert s.clip_device == "cpu"
    assert s.clip_normalize is True
    assert s.clip_timeout_s == 2.0
    assert s.clip_max_image_size == 224
    assert s.clip_cpu_threads is None
    assert s.clip_cache_dir == Path("/tmp/clip_cache")
    assert s.clip_debug_log is False
    assert s.clip_checkpoint is None
    assert s.database_url is None
    assert broker_url(s) == "redis://localhost:6379/0" and not s.broker_configured
    assert s.sidecar_dir == s.data_dir / "sidecars"


def test_values_are_parsed(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    s = load_settings(
        {
            "CLIP_ENABLED": "false",
            "CLIP_DEVICE": "AUTO",
            "CLIP_TIMEOUT_S": "0.5",
            "CLIP_CPU_THREADS": "3",
            "CLIP_CHECKPOINT": str(ckpt),
            "DATABASE_URL": "postgresql://u:p@db:5432/vidx",
            "CELERY_BROKER_URL": "redis://r:6379/1",
            "VIDX_DATA_DIR": str(tmp_path / "d"),
            "CLIP_DEBUG_LOG": "",  # empty counts as unset
        }
    )
    assert (s.clip_enabled, s.clip_device, s.clip_timeout_s, s.clip_cpu_threads) == (False, "auto", 0.5, 3)
    assert s.clip_checkpoint == ckpt
    assert s.sidecar_dir == tmp_path / "d" / "sidecars"
    assert s.clip_debug_log is False


@pytest.mark.parametrize(
    "name,value",
    [
        ("CLIP_ENABLED", "maybe"),
        ("CLIP_DEVICE", "tpu"),
        ("CLIP_TIMEOUT_S", "soon"),
        ("CLIP_TIMEOUT_S", "0"),
        ("CLIP_TIMEOUT_S", "nan"),
        ("CLIP_MAX_IMAGE_SIZE", "-5"),
        ("CLIP_CPU_THREADS", "0"),
        ("CLIP_CHECKPOINT", "/nonexistent/weights.pt"),
        ("DATABASE_URL", "mysql://x"),
        ("CELERY_BROKER_URL", "amqp://x"),
        ("VIDX_MAX_ATTEMPTS", "three"),
        ("VIDX_WORKER_GPUS", "0,,1"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({name: value})
    assert name in str(err.value)
    assert err.value.variable == name


def test_a_broker_is_configured_by_its_variable_alone() -> None:
    """Even the default URL, named explicitly, is a broker this deployment relies on (health fails without it)."""
    assert load_settings({"CELERY_BROKER_URL": "redis://localhost:6379/0"}).broker_configured
    assert not load_settings({"VIDX_BROKER_PASSWORD": "secret"}).broker_configured
    assert load_settings({}).with_overrides(celery_broker_url="redis://r:6379/1").broker_configured


def test_worker_gpus_are_a_setting() -> None:
    assert load_settings({}).worker_gpus is None
    assert load_settings({"VIDX_WORKER_GPUS": "0, 2"}).worker_gpus == ("0", "2")


def test_time_limits_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="VIDX_TASK_TIME_LIMIT_S"):
        load_settings({"VIDX_TASK_SOFT_TIME_LIMIT_S": "100", "VIDX_TASK_TIME_LIMIT_S": "50"})


def test_every_variable_is_documented() -> None:
    rows = describe_settings()
    names = {name for name, _, _ in rows}
    assert {"CLIP_ENABLED", "CLIP_CHECKPOINT", "DATABASE_URL", "CELERY_BROKER_URL", "VIDX_DATA_DIR"} <= names
    assert all(doc for _, _, doc in rows)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [name for name in names if name not in readme]
    assert not missing, f"README configuration table lacks {missing}"
