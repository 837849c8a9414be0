"""probe(): real files made with ffmpeg, good and bad (tests/badmedia.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, ProcessingError
from pipeline.media import probe as probe_module
from pipeline.media import sandbox as media_sandbox
from pipeline.media.probe import probe
from tests import badmedia
from tests.videogen import run_ffmpeg

PROBE_KINDS = [
    kind
    for kind, (_, stage, _) in badmedia.BAD_INPUTS.items()
    if stage == "probe" and not (kind == "unreadable" and os.geteuid() == 0)
]


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("badmedia")


@pytest.fixture(scope="session")
def bad_input(bad_dir: Path):
    """Make each kind of bad input once per session."""
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = badmedia.make_bad_input(kind, bad_dir)
        return made[kind]

    return get


@pytest.fixture(scope="session")
def valid_mp4(bad_dir: Path) -> Path:
    return badmedia.make_valid(bad_dir / "valid.mp4")


def _remux(src: Path, dst: Path, *extra: str) -> Path:
    run_ffmpeg(["-i", str(src), "-c", "copy", *extra, str(dst)])
    return dst


def test_valid_mp4(valid_mp4: Path) -> None:
    result = probe(valid_mp4, Settings())
    assert (result.width, result.height, result.codec, result.rotation) == (320, 180, "h264", 0)
    assert result.frame_count == 100
    assert result.fps == pytest.approx(25.0)
    assert result.duration_s == pytest.approx(4.0, abs=0.05)
    assert result.variable_frame_rate is False


@pytest.mark.parametrize("container", ["mkv", "webm_vp9", "ts", "h264"])
def test_containers_without_frame_count_are_counted(valid_mp4: Path, bad_dir: Path, container: str) -> None:
    if container == "webm_vp9":
        path = bad_dir / "vp9.webm"
        run_ffmpeg(["-i", str(valid_mp4), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                    "-b:v", "200k", str(path)])
    elif container == "h264":
        path = _remux(valid_mp4, bad_dir / "raw.h264", "-f", "h264")
    else:
        path = _remux(valid_mp4, bad_dir / f"remuxed.{container}")
    result = probe(path, Settings())
    assert result.frame_count == 100
    assert result.fps == pytest.approx(25.0, rel=0.01)
    assert result.duration_s == pytest.approx(4.0, abs=0.1)
    assert not result.variable_frame_rate


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_bad_input_refused_with_one_line(bad_input, kind: str) -> None:
    path = bad_input(kind)
    with pytest.raises(BadInputError) as info:
        probe(path, Settings())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert len(message) < 300


def test_messages_name_the_reason(bad_input) -> None:
    expected = {
        "missing": "no such file",
        "directory": "directory",
        "zero_bytes": "empty",
        "not_a_video": "not a video",
        "still_image": "still image",
        "audio_only": "no video stream",
        "truncated": "truncated",
        "truncated_no_index": "truncated",
        "huge_dimensions": "VIDX_MAX_DIMENSION",
        "absurd_duration": "VIDX_MAX_DURATION_S",
    }
    for kind, phrase in expected.items():
        with pytest.raises(BadInputError, match=phrase):
            probe(bad_input(kind), Settings())


def test_decode_time_corruption_passes_probe(bad_input) -> None:
    """Overwritten frame data is the decoder's to find; the header is intact."""
    path = bad_input("corrupt")
    assert probe(path, Settings()).frame_count == 100


def test_truncated_matroska(valid_mp4: Path, bad_dir: Path) -> None:
    whole = _remux(valid_mp4, bad_dir / "whole.mkv")
    data = whole.read_bytes()
    cut = bad_dir / "half.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated"):
        probe(cut, Settings())


def test_limits_come_from_settings(valid_mp4: Path) -> None:
    with pytest.raises(BadInputError, match="320x180 exceeds the 200px limit"):
        probe(valid_mp4, Settings(max_dimension=200))
    with pytest.raises(BadInputError, match="longer than the 2s limit"):
        probe(valid_mp4, Settings(max_duration_s=2.0))


@pytest.mark.parametrize("tag,expected", [("90", {90, 270}), ("180", {180}), ("270", {90, 270})])
def test_rotation(valid_mp4: Path, bad_dir: Path, tag: str, expected: set[int]) -> None:
    path = _remux(valid_mp4, bad_dir / f"rotated_{tag}.mp4", "-metadata:s:v", f"rotate={tag}")
    result = probe(path, Settings())
    assert result.rotation in expected
    if result.rotation in (90, 270):
        assert (result.display_width, result.display_height) == (180, 320)


def test_variable_frame_rate(bad_dir: Path) -> None:
    result = probe(badmedia.make_variable_frame_rate(bad_dir / "vfr.mp4"), Settings())
    assert result.variable_frame_rate is True
    assert result.frame_count == 100
    # 50 frames at 40 ms, 50 at 100 ms.
    assert result.duration_s == pytest.approx(2.0 + 5.0, abs=0.15)


def test_odd_file_names(valid_mp4: Path, bad_dir: Path) -> None:
    for name in ("-starts-with-dash.mp4", "has:colon.mp4", "spaces and ünïcode.mp4"):
        target = bad_dir / name
        target.write_bytes(valid_mp4.read_bytes())
        assert probe(target, Settings()).frame_count == 100


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable(bad_input) -> None:
    path = bad_input("unreadable")
    with pytest.raises(BadInputError, match="permission denied"):
        probe(path, Settings())


def test_hanging_ffprobe_times_out(valid_mp4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in ffprobe that never answers must not hang the job."""
    fake = tmp_path / "ffprobe"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(media_sandbox, "FFPROBE", str(fake))
    monkeypatch.setattr(probe_module, "HEADER_TIMEOUT_S", 0.5)
    with pytest.raises(ProcessingError, match="did not finish"):
        probe(valid_mp4, Settings())


def test_missing_ffprobe(valid_mp4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_sandbox, "FFPROBE", "/nonexistent/ffprobe")
    with pytest.raises(ProcessingError, match="ffprobe not found"):
        probe(valid_mp4, Settings())


def test_edit_list_trimmed_frames_are_not_counted(valid_mp4: Path, bad_dir: Path) -> None:
    """A stream copy cut at 1.3 s keeps the packets before it (flagged discard): 67 frames are shown, not 100."""
    path = bad_dir / "trimmed.mp4"
    run_ffmpeg(["-ss", "1.3", "-i", str(valid_mp4), "-c", "copy", str(path)])
    result = probe(path, Settings())
    assert result.frame_count == 67
    assert result.duration_s == pytest.approx(2.68, abs=0.05)


def test_size_ffmpeg_cannot_allocate_is_refused(bad_dir: Path) -> None:
    """20000x20000 is beyond FFmpeg's own limits: the stream reads back as 0x0."""
    path = badmedia.make_huge_dimensions(bad_dir / "impossible.mkv", 20000, 20000)
    with pytest.raises(BadInputError, match="no usable frame size"):
        probe(path, Settings())


def test_audio_outlasting_video_is_not_truncation(bad_dir: Path) -> None:
    """Matroska without per-stream frame counts, audio running 6 s past the video's end."""
    path = bad_dir / "long_audio.mkv"
    run_ffmpeg(["-f", "lavfi", "-t", "4", "-i", "testsrc2=size=160x90:rate=25", "-f", "lavfi", "-t", "10",
                "-i", "sine", "-c:v", "libx264", "-c:a", "libvorbis", str(path)])
    result = probe(path, Settings())
    assert result.frame_count == 100
    assert result.duration_s == pytest.approx(4.0, abs=0.05)
