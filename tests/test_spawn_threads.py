"""ffmpeg/ffprobe children start safely from a process with busy threads (pipeline/media/sandbox.py).

A ``preexec_fn`` runs Python in the child between fork and exec, including
at-fork hooks, which deadlock on any lock another thread held at the fork:
``vidx index`` with the reference pass and CLIP on hung that way every time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import videogen
from tests.spawn_under_threads import ROUNDS, SPAWNERS, SPAWNS_PER_ROUND
from tests.videogen import SOURCES, Shot

ROOT = Path(__file__).resolve().parents[1]


def test_no_python_runs_between_fork_and_exec() -> None:
    """No spawn in the project passes a preexec_fn (the sandbox puts its limits in the command line)."""
    offenders = [str(path.relative_to(ROOT)) for folder in ("pipeline", "worker") for path in (ROOT / folder).rglob("*.py")
                 if "preexec_fn=" in path.read_text()]
    assert offenders == []


def test_spawns_from_threads_while_other_threads_hold_locks(three_scene_video: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.spawn_under_threads", str(three_scene_video)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"spawns: {SPAWNERS * ROUNDS * SPAWNS_PER_ROUND}"]


def test_index_with_reference_pass_and_clip_completes(tiny_clip_checkpoint, tmp_path: Path) -> None:
    """The configuration that hung: parallel segment decoders while CLIP loads in the background."""
    lengths = [160, 150, 170, 140, 155]  # 31 s at 25 fps: three segments, decoded by two processes
    video = videogen.make_video(tmp_path / "gops.mp4", [Shot(SOURCES[i], n) for i, n in enumerate(lengths)],
                                size=(160, 90), extra=["-g", "50", "-bf", "3"])
    model_name, checkpoint = tiny_clip_checkpoint
    env = {**os.environ, "VIDX_SHOT_REFERENCE_PASS": "true", "VIDX_DECODE_PROCESSES": "2",
           "CLIP_ENABLED": "true", "CLIP_MODEL_NAME": model_name, "CLIP_CHECKPOINT": str(checkpoint),
           "CLIP_PRETRAINED": "local-checkpoint", "CLIP_DEVICE": "cpu", "CLIP_TIMEOUT_S": "30"}
    proc = subprocess.run([sys.executable, "-c", "from worker.cli import main; main()", "index", str(video),
                           "--no-db", "--sidecar-dir", str(tmp_path / "sc"), "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    starts = [s["start_frame"] for s in result["scenes"]]
    assert starts == [0, *videogen.cut_frames(lengths)]
    assert all(s["embedded"] for s in result["scenes"]), result["scenes"]
