"""Frame quality: orderings that must hold on any content, not fitted scores.

Material: frames of several lavfi sources decoded by ffmpeg, plus synthetic
"natural" images (1/f noise, the spectrum of real photographs, with sharp
shapes and text drawn on top). Each test degrades a frame in one known way
and checks the clean frame still wins, or that a hopeless frame is rejected.
"""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from pipeline.core.scene_schema import quality_json
from pipeline.core.types import Candidate, FrameQuality
from pipeline.frames.quality import pick_best, score_frame
from tests.videogen import SOURCES

W, H = 640, 360
# lavfi sources with real structure (gradients has no edges at all; tested separately).
LAVFI = {
    "testsrc2": SOURCES[0],
    "mandelbrot": SOURCES[1],
    "smptebars": SOURCES[2],
    "cellauto": SOURCES[4],
    "life": SOURCES[5],
    "boxes": SOURCES[6],
}


def decode_frame(
    source: str, width: int = W, height: int = H, at_s: float = 0.4, scale: str | None = None
) -> np.ndarray:
    """One RGB frame of a lavfi source, rendered (and optionally rescaled) by ffmpeg."""
    graph = ["-vf", f"scale={scale}"] if scale else []
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", source.format(w=width, h=height, fps=25),
           "-ss", str(at_s), "-frames:v", "1", *graph, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    if scale:
        width, height = (int(v) for v in scale.split(":"))
    return np.frombuffer(out, np.uint8).reshape(height, width, 3).copy()


def natural_image(seed: int, width: int = W, height: int = H) -> np.ndarray:
    """1/f-spectrum colour texture (like real photos) with sharp shapes and text on it."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    channels = []
    shared = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
    for _ in range(3):
        own = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
        channels.append(np.fft.irfft2(shared + 0.5 * own, s=(height, width)))
    img = np.stack(channels, axis=2)
    img = (img - img.mean()) / img.std() * 40 + 120
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(10, height // 3))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + size, y + size // 2), color, -1)
        else:
            cv2.circle(img, (x, y), size // 2, color, -1, lineType=cv2.LINE_AA)
    for i in range(3):
        cv2.putText(img, f"vidx {seed}-{i}", (int(rng.integers(0, width // 2)), int(rng.integers(30, height))),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.0, (250, 250, 250), 2, cv2.LINE_AA)
    return img


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    found = {name: decode_frame(src) for name, src in LAVFI.items()}
    for seed in (1, 2, 3):
        found[f"natural{seed}"] = natural_image(seed)
    return found


# --- degradations -------------------------------------------------------------


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def motion_blur(img: np.ndarray, length: int = 15, vertical: bool = False) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    if vertical:
        kernel[:, length // 2] = 1.0 / length
    else:
        kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(img, -1, kernel)


def scale_light(img: np.ndarray, gain: float) -> np.ndarray:
    """Exposure change in linear light (what a camera's exposure does), then back to gamma."""
    linear = (img.astype(np.float32) / 255.0) ** 2.2 * gain
    return np.clip(255.0 * linear ** (1 / 2.2), 0, 255).astype(np.uint8)


def low_contrast(img: np.ndarray, factor: float = 0.35) -> np.ndarray:
    mean = img.astype(np.float32).mean()
    return np.clip((img.astype(np.float32) - mean) * factor + mean, 0, 255).astype(np.uint8)


def fade_to_black(img: np.ndarray, amount: float = 0.5) -> np.ndarray:
    return (img.astype(np.float32) * (1 - amount)).astype(np.uint8)


def add_noise(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


# --- the score itself -----------------------------------------------------------


def test_components_in_range_and_json(frames: dict[str, np.ndarray]) -> None:
    for name, img in frames.items():
        quality = score_frame(img)
        for value in (quality.quality_score, quality.sharpness, quality.exposure, quality.contrast,
                      quality.colorfulness):
            assert 0.0 <= value <= 1.0, name
        assert quality.rejected is None, (name, quality)
        data = quality_json(quality)
        assert {"quality_score", "sharpness", "laplacian_var", "mean_luma", "clipped_highlights"} <= set(data)


def test_edgeless_frame_counts_as_blurred() -> None:
    """A smooth gradient has no edge anywhere: indistinguishable from a blurred frame."""
    quality = score_frame(decode_frame(SOURCES[7]))
    assert quality.rejected == "blurred"
    assert quality.quality_score > 0.2  # still a fair fallback when a whole scene is like this


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_beats_its_blurred_version(frames: dict[str, np.ndarray], sigma: float) -> None:
    for name, img in frames.items():
        assert score_frame(img).quality_score > score_frame(gaussian_blur(img, sigma)).quality_score, name


@pytest.mark.parametrize("vertical", [False, True])
def test_beats_its_motion_blurred_version(frames: dict[str, np.ndarray], vertical: bool) -> None:
    for name, img in frames.items():
        sharp = score_frame(img).quality_score
        assert sharp > score_frame(motion_blur(img, vertical=vertical)).quality_score, name


def test_beats_its_darkened_and_low_contrast_versions(frames: dict[str, np.ndarray]) -> None:
    for name, img in frames.items():
        clean = score_frame(img).quality_score
        assert clean > score_frame(scale_light(img, 0.15)).quality_score, name
        assert clean > score_frame(low_contrast(img)).quality_score, name


def test_beats_its_overexposed_version(frames: dict[str, np.ndarray]) -> None:
    """Where pushing exposure 3 stops really blows out the frame, the original wins."""
    checked = 0
    for name, img in frames.items():
        clean = score_frame(img)
        if not 80 <= clean.extra["mean_luma"] <= 170:
            continue  # a dark original may well look better brighter
        over = score_frame(scale_light(img, 8.0))
        if over.extra["clipped_highlights"] < 0.1:
            continue  # saturated test colours barely change: nothing blown out
        checked += 1
        assert clean.quality_score > over.quality_score, name
    assert checked >= 4


def test_mid_fade_loses_to_clean_frame(frames: dict[str, np.ndarray]) -> None:
    for name, img in frames.items():
        assert score_frame(img).quality_score > score_frame(fade_to_black(img, 0.5)).quality_score, name


def test_mid_dissolve_loses_to_the_stronger_shot(frames: dict[str, np.ndarray]) -> None:
    """Half of one shot over half of another: never better than the better clean frame.

    (It can beat a weak shot's clean frame: a double exposure is invisible to
    per-frame measures; docs/ranking.md says why candidates avoid transitions.)
    """
    names = sorted(frames)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            mix = ((frames[a].astype(np.uint16) + frames[b]) // 2).astype(np.uint8)
            best_clean = max(score_frame(frames[a]).quality_score, score_frame(frames[b]).quality_score)
            assert score_frame(mix).quality_score < best_clean, (a, b)


def test_same_frame_at_two_resolutions(frames: dict[str, np.ndarray]) -> None:
    for seed in (1,):
        big = natural_image(seed, 1280, 720)
        for small in (cv2.resize(big, (640, 360), interpolation=cv2.INTER_AREA),
                      cv2.resize(big, (960, 540), interpolation=cv2.INTER_AREA)):
            assert score_frame(small).quality_score == pytest.approx(score_frame(big).quality_score, abs=0.03)
    # ffmpeg's own scaler, as the decoder shrinks frames.
    for name in ("testsrc2", "smptebars", "life"):
        big = decode_frame(LAVFI[name], 1280, 720, at_s=0.0)
        small = decode_frame(LAVFI[name], 1280, 720, at_s=0.0, scale="640:360")
        assert score_frame(small).quality_score == pytest.approx(score_frame(big).quality_score, abs=0.05), name


def test_noise_is_not_sharpness(frames: dict[str, np.ndarray]) -> None:
    flat = np.full((H, W, 3), 120, np.uint8)
    for sigma in (5.0, 15.0, 30.0):
        noisy = score_frame(add_noise(flat, sigma))
        assert noisy.rejected == "uniform", sigma
        for name in ("natural1", "natural2", "testsrc2", "life"):
            assert score_frame(frames[name]).quality_score > noisy.quality_score, (name, sigma)
    # With the same grain on both, the sharp frame still beats its blurred twin.
    img = frames["natural1"]
    grainy_sharp = score_frame(add_noise(img, 8.0)).quality_score
    grainy_blurred = score_frame(add_noise(gaussian_blur(img, 3.0), 8.0)).quality_score
    assert grainy_sharp > grainy_blurred


# --- rejections --------------------------------------------------------------------


@pytest.mark.parametrize(
    "image,reason",
    [
        (np.zeros((H, W, 3), np.uint8), "black"),
        (np.full((H, W, 3), 12, np.uint8), "black"),
        (np.full((H, W, 3), 128, np.uint8), "uniform"),
        (np.full((H, W, 3), (200, 30, 40), np.uint8), "uniform"),
        (np.full((H, W, 3), 250, np.uint8), "uniform"),
    ],
    ids=["black", "near-black", "grey", "red", "white"],
)
def test_hopeless_frames_rejected(image: np.ndarray, reason: str) -> None:
    assert score_frame(image).rejected == reason


def test_title_card_is_not_black() -> None:
    """A few words of white text on black cover under 1% of the frame: dark, but not empty."""
    card = np.zeros((H, W, 3), np.uint8)
    cv2.putText(card, "THE END", (250, 190), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
    assert score_frame(card).extra["luma_p95"] < 40
    assert score_frame(card).rejected is None


def test_noisy_black_is_black() -> None:
    assert score_frame(add_noise(np.full((H, W, 3), 8, np.uint8), 4.0)).rejected == "black"


def test_heavily_blurred_frames_rejected(frames: dict[str, np.ndarray]) -> None:
    for name, img in frames.items():
        # Blurred this much, fine-grained content is left with no structure at all: uniform.
        assert score_frame(gaussian_blur(img, 8.0)).rejected in ("blurred", "uniform"), name
    for seed in (1, 2, 3):
        assert score_frame(gaussian_blur(frames[f"natural{seed}"], 6.0)).rejected == "blurred"


def test_fine_texture_is_not_uniform(frames: dict[str, np.ndarray]) -> None:
    """cellauto is 1-pixel cells: flat when shrunk to a thumbnail, but full of detail."""
    assert score_frame(scale_light(frames["cellauto"], 0.5)).rejected is None


# --- pick_best -------------------------------------------------------------------


def _candidates(images: list[np.ndarray]) -> list[Candidate]:
    return [Candidate(frame=i * 10, time_s=i * 0.4, image=img) for i, img in enumerate(images)]


def test_pick_best_prefers_sharp_unrejected(frames: dict[str, np.ndarray]) -> None:
    img = frames["natural2"]
    cands = _candidates([gaussian_blur(img, 3), fade_to_black(img, 0.6), img, motion_blur(img),
                         np.zeros_like(img)])
    best, quality = pick_best(cands)
    assert best.frame == 20
    assert isinstance(quality, FrameQuality) and quality.rejected is None


def test_pick_best_all_rejected_returns_highest_scoring() -> None:
    grey = np.full((H, W, 3), 128, np.uint8)
    cands = _candidates([np.zeros((H, W, 3), np.uint8), grey, np.full((H, W, 3), 20, np.uint8)])
    best, quality = pick_best(cands)
    assert best.frame == 10
    assert quality.rejected == "uniform"


def test_pick_best_ties_go_to_the_middle(frames: dict[str, np.ndarray]) -> None:
    img = frames["natural3"]
    cands = _candidates([img.copy() for _ in range(5)])
    best, _ = pick_best(cands)
    assert best.frame == 20
    best, _ = pick_best(cands[:4])  # middle is between frames 10 and 20: either is nearest
    assert best.frame in (10, 20)


def test_pick_best_needs_candidates() -> None:
    with pytest.raises(ValueError):
        pick_best([])


def test_rejects_wrong_input() -> None:
    with pytest.raises(ValueError):
        score_frame(np.zeros((10, 10), np.uint8))
