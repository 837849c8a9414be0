"""A run SIGKILLed between publish steps leaves the old complete state or the new one (real DB, real files).

The kill is injected into a real ``vidx index`` subprocess: it re-indexes a
video whose file changed (3 scenes -> 2) and kills itself right after one
publish step. Then, as a worker starting would, the leftovers are swept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from pipeline import store
from pipeline.intake.naming import canonical_source, video_id_for
from pipeline.store import videos
from tests import videogen
from tests.fixtures.media import sidecar_entries
from tests.fixtures.queue import REPO_ROOT, wait_for

OWNER = uuid.UUID("44444444-4444-4444-4444-444444444444")

# step -> the code that replaces one publish step with "do it (or not), then die"
_KILL_AFTER = {
    "published": "real = S.publish\ndef step(self):\n    real(self); os.kill(os.getpid(), signal.SIGKILL)\nS.publish = step",
    "committed": "def step(self):\n    os.kill(os.getpid(), signal.SIGKILL)\nS.make_current = step",
    "linked": (
        "from pipeline.storage.local import LocalStorage\n"
        "def step(self, vid, keep):\n    os.kill(os.getpid(), signal.SIGKILL)\nLocalStorage.remove_versions = step"
    ),
}


def _index(path: Path, env: dict[str, str], inject: str = "") -> subprocess.CompletedProcess:
    code = (
        "import os, signal, sys\nfrom pipeline.storage.local import LocalStaging as S\n" + inject +
        "\nfrom worker.cli import main\nsys.argv = ['vidx', *sys.argv[1:]]\nmain()"
    )
    return subprocess.run([sys.executable, "-c", code, "index", str(path), "--owner", str(OWNER)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _state(conn: psycopg.Connection, vid: uuid.UUID, sidecar_root: Path) -> tuple[int, int]:
    """(scenes in the database, scenes in the readable sidecar), checking every frame_path exists."""
    paths = [row[0] for row in conn.execute("SELECT frame_path FROM scenes WHERE video_id = %s", (vid,))]
    assert paths and all(Path(p).is_file() for p in paths), paths
    sidecar = json.loads((sidecar_root / str(vid) / "sidecar.json").read_text())
    for scene in sidecar["scenes"]:
        assert (sidecar_root / str(vid) / scene["best_frame"]["path"]).is_file()
    return len(paths), len(sidecar["scenes"])


@pytest.mark.parametrize("crash_after", list(_KILL_AFTER))
def test_kill_between_publish_steps(crash_after: str, db_settings, db_conn, media_dir, tmp_path) -> None:
    source = tmp_path / "clip.mp4"
    shutil.copy(videogen.make_cut_video(media_dir / "crash_3.mp4", [25, 25, 25], size=(160, 90)), source)
    env = {**os.environ, "CLIP_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT), "VIDX_FRAME_HEIGHT": "64",
           "VIDX_LEASE_S": "2", "VIDX_HEARTBEAT_S": "1"}
    assert _index(source, env).returncode == 0
    vid = video_id_for(OWNER, canonical_source(str(source)))
    root = db_settings.sidecar_dir
    assert _state(db_conn, vid, root) == (3, 3)

    shutil.copy(videogen.make_cut_video(media_dir / "crash_2.mp4", [25, 25], size=(160, 90)), source)
    killed = _index(source, env, _KILL_AFTER[crash_after])
    assert killed.returncode == -9, killed.stderr[-2000:]

    # Right after the kill: every reader sees a complete state, old or new.
    db_scenes, sidecar_scenes = _state(db_conn, vid, root)
    expected_db = 3 if crash_after == "published" else 2
    assert db_scenes == expected_db
    assert sidecar_scenes in (2, 3)

    # A worker starting: once no live lease covers the video, its leftovers are swept and
    # the sidecar link agrees with the database.
    wait_for(lambda: not videos.live_leases(db_conn, [vid]), timeout=30, what="the dead run's lease to expire")
    from pipeline.jobs import sweep_leftovers

    sweep_leftovers(db_conn, db_settings)
    assert _state(db_conn, vid, root) == (expected_db, expected_db)
    assert sidecar_entries(root) == [str(vid)]
    assert store.get_video(db_conn, vid)["sidecar_version"] is not None
