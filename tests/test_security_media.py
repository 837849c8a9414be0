"""Security (issue 10): hostile media cannot read other files, lie past the limits or exhaust a worker.

Real ffprobe/ffmpeg on files made with ffmpeg (tests/secmedia.py). Each test
reproduces an attack and asserts the safe outcome: one clear line naming the
file, nothing of another file decoded, bounded memory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, ProcessingError
from pipeline.core.types import ProbeResult
from pipeline.media import decode as decode_module
from pipeline.media import probe as probe_module
from pipeline.media import sandbox as media_sandbox
from pipeline.media.decode import DecodeOptions, FrameStream, decode_frame_at, scaled_size
from pipeline.media.probe import probe
from pipeline.shots.scenes import detect_scenes
from tests import badmedia, secmedia


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secmedia")


@pytest.fixture(scope="module")
def victim(work: Path) -> Path:
    """Another tenant's video on the worker's disk."""
    (work / "other_tenant").mkdir()
    return badmedia.make_valid(work / "other_tenant" / "private.mp4")


def _fake_probe(width: int = 320, height: int = 180, frames: int = 100) -> ProbeResult:
    return ProbeResult(duration_s=frames / 25, fps=25.0, frame_count=frames, width=width, height=height,
                       codec="h264", rotation=0)


def _assert_one_line_naming(exc: BaseException, path: Path) -> str:
    message = str(exc)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert len(message) < 400
    return message


# --- 1. files that make ffmpeg read other files ------------------------------------------


@pytest.mark.parametrize(
    ("name", "maker", "kind"),
    [
        ("video.mp4", secmedia.make_hls_playlist, "HLS playlist"),
        ("video.m3u8", secmedia.make_hls_playlist, "HLS playlist"),
        ("video.mpd", secmedia.make_dash_manifest, ""),
        ("video.ffconcat", secmedia.make_concat_script, ""),
    ],
    ids=["hls-as-mp4", "hls", "dash", "concat"],
)
def test_playlists_manifests_and_scripts_are_bad_input_and_read_nothing_else(
    work: Path, victim: Path, name: str, maker, kind: str
) -> None:
    path = maker(work / name, victim)
    with pytest.raises(BadInputError) as info:
        probe(path, Settings())
    message = _assert_one_line_naming(info.value, path)
    assert kind in message
    # The decoder, reached without the probe's refusal, decodes none of the other file's frames either.
    with pytest.raises(BadInputError, match=r"no video frames could be decoded"):
        list(detect_scenes(path, _fake_probe(), Settings()))
    assert decode_frame_at(path, 1.0, (64, 36)) is None


def test_self_referencing_playlist_is_refused_with_bounded_memory(work: Path) -> None:
    """Followed, a 50-byte self-referencing master playlist drove ffprobe past 5 GB; now it is never opened."""
    path = secmedia.make_self_referencing_playlist(work / "loop.m3u8")
    assert path.stat().st_size < 80
    # In a fresh interpreter: RUSAGE_CHILDREN is a maximum over every child a process ever had, so
    # measured in this (long-lived) test process it would count other tests' children too.
    code = (
        "import resource, sys\n"
        "from pipeline.core.config import Settings\n"
        "from pipeline.core.errors import BadInputError\n"
        "from pipeline.media.probe import probe\n"
        "try:\n"
        "    probe(sys.argv[1], Settings())\n"
        "except BadInputError as exc:\n"
        "    print('refused:', exc)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.splitlines()
    assert out[0].startswith("refused:") and "HLS playlist" in out[0], out
    peak_child_kib = int(out[-1])
    assert peak_child_kib < 1024 * 1024, f"a child reached {peak_child_kib} KiB"


def test_image_sequence_pattern_is_not_expanded(work: Path, victim: Path) -> None:
    frames = work / "seq"
    frames.mkdir()
    for i in range(1, 4):
        badmedia.make_still_image(frames / f"img{i:03d}.png")
    pattern = frames / "img%03d.png"
    pattern.write_bytes((frames / "img001.png").read_bytes())
    with pytest.raises(BadInputError) as info:
        probe(pattern, Settings())
    _assert_one_line_naming(info.value, pattern)


def test_every_child_runs_under_memory_and_cpu_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits are in force in the exec'd program itself (a stand-in ffmpeg reports its own)."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nulimit -v; ulimit -t; ulimit -Ht; ulimit -c\n")
    fake.chmod(0o755)
    monkeypatch.setattr(media_sandbox, "FFMPEG", str(fake))
    settings = Settings(ffmpeg_memory_mb=1536, ffmpeg_cpu_s=77)
    out = media_sandbox.run(media_sandbox.FFMPEG, [], settings, timeout_s=30, text=True).stdout.split()
    assert out == [str(1536 * 1024), "77", "82", "0"]


def test_inputs_are_whitelisted_everywhere() -> None:
    """Every command line that opens a tenant's file carries both whitelists and a file: input."""
    opts = DecodeOptions(detect_size=(32, 18), sample_size=(64, 36), sample_every=5)
    cmd = decode_module._ffmpeg_args(Path("/x/v.mp4"), opts)
    probe_cmd = probe_module._ffprobe_args(Path("/x/v.mp4"), ["-show_streams"])
    for line in (cmd, probe_cmd):
        assert line[line.index("-protocol_whitelist") + 1] == "file"
        assert "hls" not in line[line.index("-format_whitelist") + 1].split(",")
        assert line[line.index("-i") + 1] == "file:/x/v.mp4"


# --- 4. limits hold for what is decoded, not what headers say --------------------------------


def test_frame_cap_stops_the_packet_pass(work: Path) -> None:
    path = secmedia.make_high_frame_rate(work / "flood.mkv", fps=25, frames=600)
    with pytest.raises(BadInputError, match="more than 500 frames.*VIDX_MAX_FRAMES") as info:
        probe(path, Settings(max_frames=500))
    _assert_one_line_naming(info.value, path)


def test_packet_pass_keeps_bounded_state_for_any_length() -> None:
    """The packet pass folds each line as it streams: its state does not grow with the frame count."""
    counter = probe_module._PacketCounter(0)
    for n in range(300_000):
        counter.add(f"0,{n / 1000:.3f},{n / 1000:.3f},0.001000,K_\n")
    packets = counter.result("")
    assert packets.count == 300_000
    assert len(packets.deltas) <= probe_module._DELTA_SAMPLE
    assert len(counter._window) == 0


def test_frame_rate_cap(work: Path) -> None:
    path = secmedia.make_high_frame_rate(work / "fast.mkv", fps=1000, frames=400)
    with pytest.raises(BadInputError, match="VIDX_MAX_FPS") as info:
        probe(path, Settings())
    _assert_one_line_naming(info.value, path)


def test_repeated_timestamps_cannot_hide_a_long_video(work: Path) -> None:
    """50 x 4 s spliced together: the file claims 4 s, the content plays 200 s."""
    path = secmedia.make_spliced_timestamps(work / "spliced.ts")
    with pytest.raises(BadInputError, match="timestamps repeat or go backwards") as info:
        probe(path, Settings(max_duration_s=60))
    _assert_one_line_naming(info.value, path)


def test_content_duration_counts_packet_durations() -> None:
    """Packets whose times are squeezed into a short span still count for their own durations."""
    counter = probe_module._PacketCounter(0)
    for n in range(1000):
        counter.add(f"0,{(n % 2) * 0.001 + n * 0.000001:.6f},,0.040000,K_\n")
    packets = counter.result("")
    assert probe_module._content_duration(packets, 0.05) == pytest.approx(40.0)


def test_frame_size_is_checked_on_every_decoded_frame(work: Path) -> None:
    path = secmedia.make_growing_frames(work / "grows.ts", (320, 240), (1024, 768))
    settings = Settings(max_dimension=800)
    result = probe(path, settings)  # the header only knows the first frames
    assert (result.width, result.height) == (320, 240)
    with pytest.raises(BadInputError, match=r"1024x768, over the 800px limit \(VIDX_MAX_DIMENSION\)") as info:
        list(detect_scenes(path, result, settings))
    _assert_one_line_naming(info.value, path)


def test_candidate_frames_are_capped_on_both_sides() -> None:
    wide, normal = scaled_size(8192, 360, 360), scaled_size(640, 360, 360)
    assert wide[0] * wide[1] <= normal[0] * normal[1]
    assert scaled_size(360, 8192, 360)[1] <= 360


def test_sample_queue_is_bounded(work: Path) -> None:
    clip = badmedia.make_valid(work / "q.mp4")
    opts = DecodeOptions(detect_size=(32, 18), sample_size=(64, 36), sample_every=1)
    with FrameStream(clip, opts, batch_frames=16) as stream:
        batches = stream.batches()
        next(batches)
        assert stream._samples is not None
        assert 0 < stream._samples.samples.maxsize <= 16 + decode_module._SampleReader.SLACK
        assert sum(len(b.samples) for b in batches) > 0


# --- a header that lies is not by itself a reason to refuse ----------------------------------


def test_old_avi_whose_header_overstates_its_frames_is_indexed(work: Path) -> None:
    path = secmedia.make_lying_avi(work / "old_cinepak.avi")
    result = probe(path, Settings())
    assert result.frame_count == 68 and result.codec == "cinepak"
    scenes = list(detect_scenes(path, result, Settings()))
    assert scenes[-1].span.end_frame == 67


def test_real_truncation_is_still_refused(work: Path) -> None:
    path = badmedia.make_truncated(work / "cut.mp4")
    with pytest.raises(BadInputError, match="truncated"):
        probe(path, Settings())


# --- the machine's faults are not the video's --------------------------------------------------


def test_missing_ffmpeg_is_a_processing_error(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = badmedia.make_valid(work / "noffmpeg.mp4")
    monkeypatch.setattr(media_sandbox, "FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(ProcessingError, match="ffmpeg not found"):
        list(detect_scenes(clip, _fake_probe(), Settings()))
    with pytest.raises(ProcessingError, match="ffmpeg not found"):
        decode_frame_at(clip, 0.5, (64, 36))


def test_decode_frame_at_has_a_timeout(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(media_sandbox, "FFMPEG", str(fake))
    with pytest.raises(ProcessingError, match="did not return the frame"):
        decode_frame_at(work / "any.mp4", 0.5, (64, 36), timeout_s=0.5)
