"""A password-protected broker (issue 26): the password in VIDX_BROKER_PASSWORD, the URL without it.

Celery on its own prefers ``CELERY_BROKER_URL`` from the environment and so
would connect without the password. Here a real ``redis-server
--requirepass`` on loopback, real ``vidx worker`` and ``vidx`` subprocesses
and the real API app check that every part of vidx logs in (or, with a wrong
password, that every part fails and both health reports say so), and that
``vidx health`` and ``/v1/health`` agree in every broker configuration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from pipeline.core.config import load_settings
from pipeline.store.api_keys import create_api_key
from tests import videogen
from tests.fixtures.queue import WorkerPool, WorkerProcess, free_port, run_vidx, wait_for, worker_env
from worker.api import create_app

OWNER = uuid.UUID("26262626-2626-4626-8626-262626262626")
PASSWORD = "s3cret pass/word"  # a space and a slash: the URL must quote it
SMALL = (160, 90)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def locked_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own that refuses every client without PASSWORD; its URL holds no password."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (scripts/install.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("locked-redis")), "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_connect_timeout=0.5)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_for(ready, timeout=15, what="the password-protected redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def broker(locked_broker: str) -> str:
    """The locked broker, emptied before the test."""
    client = redis.Redis.from_url(locked_broker, password=PASSWORD)
    try:
        client.flushdb()
    finally:
        client.close()
    return locked_broker


def _env(broker_url: str | None, password: str | None, database_url: str, data_dir: Path) -> dict[str, str]:
    """A worker's environment with this broker configuration (``None``: that variable unset)."""
    env = worker_env(broker_url=broker_url or "unset", database_url=database_url, data_dir=data_dir)
    if broker_url is None:
        env.pop("CELERY_BROKER_URL")
    if password is not None:
        env["VIDX_BROKER_PASSWORD"] = password
    return env


def _use_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process's vidx variables become exactly ``env``'s, as in a `vidx serve` started with it."""
    for name in ("CELERY_BROKER_URL", "VIDX_BROKER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if name.startswith(("VIDX_", "CLIP_", "CELERY_", "DATABASE_URL")):
            monkeypatch.setenv(name, value)


def _cli_health(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    proc = run_vidx(env, "health", "--json", check=False)
    return proc.returncode, {c["check"]: c for c in json.loads(proc.stdout)}


def _api_health(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/v1/health")
    return response.status_code, response.json()["checks"]


def _api_key(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        _, key = create_api_key(conn, owner_id=OWNER, name="broker-auth")
    return {"Authorization": f"Bearer {key}"}


def _statuses(database_url: str, ids: list[str]) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT id::text, status FROM videos WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
    return dict(rows)


def test_every_part_logs_in_with_the_password_from_its_own_variable(
    broker: str, clean_database_url: str, media_dir: Path, tmp_path: Path, workers: WorkerPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(broker, PASSWORD, clean_database_url, tmp_path / "data")
    video = videogen.make_cut_video(media_dir / "broker_auth.mp4", [25, 25], size=SMALL)
    workers.start(env)

    enqueued = run_vidx(env, "enqueue", "--owner", str(OWNER), "--json", str(video))
    ids = [row["video_id"] for row in json.loads(enqueued.stdout)]

    _use_environment(monkeypatch, env)
    with TestClient(create_app(load_settings()), raise_server_exceptions=False) as client:
        upload = client.post("/v1/videos/upload?filename=upload.mp4", headers=_api_key(clean_database_url),
                             content=video.read_bytes())
        assert upload.status_code == 202, upload.text
        ids.append(upload.json()["video_id"])
        api_code, api_checks = _api_health(client)
    assert api_code == 200 and api_checks["broker"] == {"ok": True, "status": "ok", "detail": "reachable"}, api_checks

    # the worker took both tasks: the one `vidx enqueue` sent and the one the API sent
    done = wait_for(lambda: (s := _statuses(clean_database_url, ids)) and set(s.values()) <= {"done", "failed"} and s,
                    timeout=120, what="both videos to be indexed")
    assert done == dict.fromkeys(ids, "done")

    cli_code, cli_checks = _cli_health(env)
    assert cli_code == 0 and cli_checks["broker"]["status"] == "ok", cli_checks
    assert PASSWORD not in cli_checks["broker"]["detail"]


class _LockedOutWorker(WorkerProcess):
    """Started is as far as it gets: it counts as up once it has logged its refused login."""

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
        log = self.log_text()
        if " ready." in log:
            raise AssertionError(f"a worker with the wrong password logged in:\n{log[-4000:]}")
        return "invalid username-password pair" in log


def test_a_wrong_password_fails_everywhere_and_both_reports_say_so(
    broker: str, clean_database_url: str, media_dir: Path, tmp_path: Path, workers: WorkerPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(broker, "not the password", clean_database_url, tmp_path / "data")
    video = videogen.make_cut_video(media_dir / "broker_auth.mp4", [25, 25], size=SMALL)

    worker = _LockedOutWorker("locked-out", env, tmp_path / "locked-out.log")
    workers.started.append(worker)  # stopped in teardown like any other
    worker.start()

    enqueued = run_vidx(env, "enqueue", "--owner", str(OWNER), str(video), check=False)
    assert enqueued.returncode == 1 and "broker unavailable" in enqueued.stderr, enqueued.stderr
    assert "not the password" not in enqueued.stderr

    _use_environment(monkeypatch, env)
    with TestClient(create_app(load_settings()), raise_server_exceptions=False) as client:
        refused = client.post("/v1/videos", headers=_api_key(clean_database_url), json={"url": "https://example.com/v.mp4"})
        assert refused.status_code == 503, refused.text
        api_code, api_checks = _api_health(client)
    assert api_code == 503 and api_checks["broker"] == {"ok": False, "status": "failing", "detail": "unavailable"}

    cli_code, cli_checks = _cli_health(env)
    assert cli_code == 1 and cli_checks["broker"]["status"] == "failing", cli_checks
    assert "invalid username-password pair" in cli_checks["broker"]["detail"]


@pytest.mark.parametrize("configuration", ["no broker", "password in the URL", "password in its own variable",
                                           "wrong password", "unreachable"])
def test_both_health_reports_agree(
    configuration: str, broker: str, clean_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_password = f"redis://:{quote(PASSWORD, safe='')}@{broker.split('://', 1)[1]}"
    broker_url, password = {
        "no broker": (None, None),
        "password in the URL": (with_password, None),
        "password in its own variable": (broker, PASSWORD),
        "wrong password": (broker, "not the password"),
        "unreachable": (f"redis://127.0.0.1:{free_port()}/0", PASSWORD),
    }[configuration]
    env = _env(broker_url, password, clean_database_url, tmp_path / "data")
    cli_code, cli_checks = _cli_health(env)
    _use_environment(monkeypatch, env)
    with TestClient(create_app(load_settings()), raise_server_exceptions=False) as client:
        api_code, api_checks = _api_health(client)

    assert {name: (c["ok"], c["status"]) for name, c in cli_checks.items()} == {
        name: (c["ok"], c["status"]) for name, c in api_checks.items()
    }, (cli_checks, api_checks)
    assert (cli_code == 0) == (api_code == 200)
    expected_ok = configuration in ("no broker", "password in the URL", "password in its own variable")
    assert cli_checks["broker"]["ok"] is expected_ok, cli_checks
    if configuration == "no broker":  # nothing configured it, nothing needs it
        assert cli_checks["broker"]["status"] in ("ok", "not configured")
    assert api_checks["model"]["status"] == "not configured"  # CLIP_ENABLED=false in both
