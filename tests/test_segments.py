"""Keyframe-aligned segments decoded in parallel give exactly the frames of one decode (pipeline/media/segments.py).

Videos are made with ffmpeg with short GOPs, so a few seconds hold several
segments; every comparison is against the same stream decoded in one piece.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.config import Settings, load_settings
from pipeline.core.errors import BadInputError, ConfigError
from pipeline.media.decode import DecodeOptions
from pipeline.media.reference import PacketIndex, read_packet_index
from pipeline.media.segments import Segment, SegmentedDecode, plan_segments
from pipeline.shots.scenes import detect_scenes
from tests import videogen
from tests.test_scenes import assert_tiles, probe_of, run
from tests.videogen import SOURCES, Shot

SIZE = (192, 108)
OPTS = DecodeOptions(detect_size=(64, 36), sample_size=(96, 54), sample_every=2, reference_frames_only=True)
# A keyframe every 20 frames (0.8 s) and B-frames: 8 s hold about ten GOPs.
SHORT_GOPS = ["-g", "20", "-bf", "3", "-x264-params", "scenecut=0"]


def _video(tmp_path: Path, name: str = "gops.mp4", extra: list[str] | None = None) -> Path:
    lengths = [45, 38, 52, 41, 60, 24]
    shots = [Shot(SOURCES[i % len(SOURCES)], n) for i, n in enumerate(lengths)]
    return videogen.make_video(tmp_path / name, shots, size=SIZE, extra=[*SHORT_GOPS, *(extra or [])])


def _decode(path: Path, workers: int, segment_s: float = 1.5, index: PacketIndex | None = None,
            segments: list[Segment] | None = None):
    settings = Settings()
    index = index or read_packet_index(path, settings)
    assert index is not None
    displays, frames, samples = [], [], []
    with SegmentedDecode(path, index, OPTS, settings, workers, segment_s=segment_s) as decode:
        if segments is not None:
            decode.segments = segments
        for rb in decode.batches():
            displays.append(rb.displays)
            frames.append(rb.frames)
            samples += rb.samples
        assert decode.code == 0
    return np.concatenate(displays), np.concatenate(frames), samples, decode


def _assert_same(a, b, samples: bool = True) -> None:
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[1], b[1])
    if not samples:
        return
    assert [d for d, _ in a[2]] == [d for d, _ in b[2]]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a[2], b[2], strict=True))


def test_plan_splits_on_keyframes_and_tiles_the_stream(tmp_path):
    path = _video(tmp_path)
    index = read_packet_index(path, Settings())
    assert index is not None
    segments = plan_segments(index, target_s=1.5)
    assert len(segments) >= 4
    assert segments[0].first == 0 and segments[-1].end == len(index.times)
    for a, b in zip(segments, segments[1:], strict=False):
        assert a.end == b.first and index.keyframe[b.first]
        assert b.start_s == pytest.approx(index.times[b.first])
        assert index.times[b.first] - index.times[a.first] >= 1.5
    # The last segment is never a stub: a short tail joins the one before.
    assert index.times[-1] - index.times[segments[-1].first] >= 0.75
    assert plan_segments(index, target_s=60) == [Segment(0, len(index.times), float(index.times[0]))]


def test_segments_decoded_in_parallel_equal_one_decode(tmp_path):
    path = _video(tmp_path)
    whole = _decode(path, workers=1, segment_s=60)
    one = _decode(path, workers=1)
    many = _decode(path, workers=3)
    assert len(whole[3].segments) == 1 and len(many[3].segments) >= 4
    # The same frames as one decode; samples restart their cadence on each segment's keyframe, so
    # they depend on the segments (the stream), never on how many processes decode them.
    _assert_same(whole, many, samples=False)
    _assert_same(one, many)
    # Reference frames only, in display order, no frame twice; samples are among them.
    assert np.all(np.diff(many[0]) > 0) and len(many[0]) < 260
    assert {d for d, _ in many[2]} <= set(many[0].tolist())


@pytest.mark.parametrize("name", ["gops.ts", "gops.mkv", "gops.mov"])
def test_segments_equal_one_decode_in_other_containers(tmp_path, name):
    # MPEG-TS starts its clock at ~1.4 s: -ss must be read as a packet time, not an offset from the start.
    path = _video(tmp_path, name)
    index = read_packet_index(path, Settings())
    assert index is not None and (index.times[0] > 0.5 or not name.endswith(".ts"))
    _assert_same(_decode(path, workers=1, index=index), _decode(path, workers=2, index=index))


def test_a_seek_that_lands_past_its_keyframe_is_decoded_again_from_earlier(tmp_path):
    path = _video(tmp_path)
    one = _decode(path, workers=1)
    _, _, _, decode = _decode(path, workers=2)
    segments = list(decode.segments)
    # Segment 2 claims to start at segment 3's keyframe time: its seek skips a whole GOP.
    segments[2] = dataclasses.replace(segments[2], start_s=segments[3].start_s)
    again = _decode(path, workers=2, segments=segments)
    _assert_same(one, again, samples=False)  # a redone segment samples from the earlier keyframe's cadence
    assert {d for d, _ in again[2]} <= set(again[0].tolist())


def test_when_seeking_cannot_be_trusted_the_rest_is_decoded_once_from_the_start(tmp_path):
    path = _video(tmp_path)
    one = _decode(path, workers=1)
    _, _, _, decode = _decode(path, workers=2)
    last = decode.segments[-1].start_s
    # Every segment after the first seeks to the last keyframe: late, and late again from the one before.
    segments = [decode.segments[0], *(dataclasses.replace(x, start_s=last) for x in decode.segments[1:-1])]
    segments.append(decode.segments[-1])
    _assert_same(one, _decode(path, workers=2, segments=segments), samples=False)


def test_reference_pass_scenes_are_the_same_with_parallel_segments(tmp_path):
    path = _video(tmp_path)
    one = run(path, shot_reference_pass=True, decode_processes=1)
    many = run(path, shot_reference_pass=True, decode_processes=3)
    assert [(s.span.start_frame, s.span.end_frame, s.span.start_s, s.span.end_s) for s in one] == \
        [(s.span.start_frame, s.span.end_frame, s.span.start_s, s.span.end_s) for s in many]
    assert [[c.frame for c in s.candidates] for s in one] == [[c.frame for c in s.candidates] for s in many]
    assert [s.span.start_frame for s in many] == [0, 45, 83, 135, 176, 236]
    assert_tiles(many, 260)


def test_decode_processes_setting():
    assert load_settings({"VIDX_DECODE_PROCESSES": "3"}).decode_workers() == 3
    assert 1 <= load_settings({}).decode_workers() <= 4
    with pytest.raises(ConfigError, match="VIDX_DECODE_PROCESSES"):
        load_settings({"VIDX_DECODE_PROCESSES": "-1"})


def test_truncated_stream_is_bad_input_in_the_parallel_pass(tmp_path):
    src = _video(tmp_path, extra=["-movflags", "+faststart"])
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    settings = Settings().with_overrides(shot_reference_pass=True, decode_processes=3)
    with pytest.raises(BadInputError, match=r"corrupt video stream: decoding stopped at frame \d+ of ~260"):
        list(detect_scenes(cut, probe_of(src), settings))


def test_a_frame_over_the_size_limit_stops_every_segment(tmp_path):
    path = _video(tmp_path)
    settings = Settings().with_overrides(shot_reference_pass=True, decode_processes=3, max_dimension=100)
    with pytest.raises(BadInputError, match="over the 100px limit"):
        list(detect_scenes(path, probe_of(path), settings))


def test_a_reader_that_stops_early_leaves_no_decoder_running(tmp_path, monkeypatch):
    import psutil

    from pipeline.media import decode as decode_module
    from pipeline.media import segments

    # One frame per batch and no slack anywhere, so each decoder blocks on its pipe after a few frames.
    monkeypatch.setattr(segments, "BATCH_FRAMES", 1)
    monkeypatch.setattr(segments, "QUEUE_BATCHES", 1)
    monkeypatch.setattr(decode_module._DetectionReader, "MAX_CHUNKS", 1)
    path = _video(tmp_path)
    index = read_packet_index(path, Settings())
    assert index is not None

    def decoders() -> list[psutil.Process]:  # other children (the suite's redis-server) are not ours
        found = []
        for child in psutil.Process().children():
            try:
                if child.name() == "ffmpeg" and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
            except psutil.NoSuchProcess:
                pass
        return found

    with SegmentedDecode(path, index, OPTS, Settings(), workers=3, segment_s=4) as decode:
        next(iter(decode.batches()))
        assert decoders()
    assert not decoders()
