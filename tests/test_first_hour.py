"""What a new user meets first: health on the embedded defaults, offline CLIP, whole-word errors."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.errors import first_line, shorten
from tests.fixtures.queue import free_port, worker_env
from tests.fixtures.queue import run_vidx as vidx

OWNER = "33333333-3333-3333-3333-333333333333"


def _single_machine_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = worker_env(broker_url="unused", database_url=database_url, data_dir=data_dir, VIDX_LOG_FORMAT="console")
    env.pop("CELERY_BROKER_URL")  # the single-machine defaults configure no broker
    return env


def test_health_passes_on_the_single_machine_defaults(clean_database_url: str, tmp_path: Path) -> None:
    proc = vidx(_single_machine_env(clean_database_url, tmp_path), "health", "--skip-model", "--json", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert checks["broker"]["ok"] and checks["database"]["ok"]


def test_health_still_fails_when_a_configured_broker_is_down(clean_database_url: str, tmp_path: Path) -> None:
    env = {**_single_machine_env(clean_database_url, tmp_path), "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = vidx(env, "health", "--skip-model", "--json", check=False)
    assert proc.returncode == 1
    assert not {c["check"]: c for c in json.loads(proc.stdout)}["broker"]["ok"]


def test_offline_clip_fails_fast_with_one_complete_line_naming_clip_checkpoint(
    clean_database_url: str, tmp_path: Path
) -> None:
    """No weights cached, download host unreachable (a closed loopback port stands in for the hub)."""
    env = {
        **_single_machine_env(clean_database_url, tmp_path),
        "CLIP_ENABLED": "true",
        "CLIP_CACHE_DIR": str(tmp_path / "empty-cache"),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "VIDX_LOG_LEVEL": "error",
    }
    proc = vidx(env, "search", "--text", "a red car", "--owner", OWNER, check=False)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vidx: error:")]
    assert len(errors) == 1, proc.stderr
    assert "CLIP_CHECKPOINT=" in errors[0] and "CLIP_CACHE_DIR" in errors[0]
    assert errors[0].endswith("network"), errors[0]  # the whole sentence, not cut mid-word


def test_shortened_reasons_end_on_a_whole_word() -> None:
    text = "Please check your connection and try again " * 20
    short = shorten(text, 60)
    assert len(short) <= 60 and short.endswith("…")
    assert text.startswith(short[:-1]) and text[len(short) - 1] == " "  # the cut falls between words
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(RuntimeError("first\nsecond")) == "first"
