"""Frame quality: score candidate frames and pick each scene's best one.

Every measure is taken on the frame resized to a fixed analysis area, so a
frame scores (nearly) the same whatever resolution it was decoded at. The
formula, the rejection rules and the reasons behind them are in
docs/ranking.md; keep the two in step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.core.types import Candidate, FrameQuality

# Frames are analysed at about this many pixels (e.g. 452x255 for 16:9);
# larger frames are shrunk with area averaging, smaller ones are used as they are
# (enlarging would only add blur).
ANALYSIS_PIXELS = 452 * 255
# Gaussian sigma (analysis pixels) applied before the Laplacian: pixel noise
# and compression grain are finer than this, real edges survive it.
DENOISE_SIGMA = 1.0
# Thumbnail (long side) on which "is anything there at all" is judged;
# averaging over ~20x20 blocks removes noise and grain but keeps shapes.
THUMB_LONG_SIDE = 24

# Saturation scales of the components (value giving 1 - 1/e = 0.63).
SHARPNESS_SCALE = 150.0  # Laplacian variance of the denoised analysis luma
CONTRAST_SCALE = 90.0  # 5-95 percentile luma range, 0..255
COLORFULNESS_SCALE = 45.0  # Hasler-Suesstrunk M ("averagely colourful")

# Component weights in the overall score (sum to 1).
WEIGHTS = {"sharpness": 0.45, "exposure": 0.25, "contrast": 0.2, "colorfulness": 0.1}

# Rejection rules (see docs/ranking.md).
BLACK_P99_LUMA = 40  # 99% of the frame darker than dark grey ...
BLACK_BRIGHT_LUMA = 80  # ... and almost nothing (no title text) brighter than this
BLACK_BRIGHT_SHARE = 0.002
UNIFORM_SPREAD = 12.0  # p1-p99 range of every thumbnail channel below this ...
UNIFORM_LAPLACIAN_VAR = 25.0  # ... and no fine texture either (denoised Laplacian variance)
BLUR_SHARPNESS_MAX = 0.35  # blurred needs a low absolute sharpness ...
BLUR_DETAIL_RATIO = 0.05  # ... and fine detail far below what the coarse structure predicts,
BLUR_EFFECT_MAX = 0.7  # ... or edges that barely change when blurred again (Crete-Roffet)
MIN_COARSE_VAR = 2.0  # below this there is no coarse structure to predict detail from
NO_EDGES_LAPLACIAN_VAR = 1.0  # ... or no edge anywhere (Laplacian std under one grey level)

def score_frame(image: np.ndarray) -> FrameQuality:
    """Score one RGB uint8 frame (HxWx3): overall quality in [0, 1], its components, and why it is rejected if it is."""
    rgb = _analysis_image(image)
    luma8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    luma = luma8.astype(np.float32)
    smooth = cv2.GaussianBlur(luma, (0, 0), DENOISE_SIGMA)

    laplacian_var = _laplacian_var(smooth)
    coarse_var = _coarse_laplacian_var(luma)
    detail_ratio = laplacian_var / max(coarse_var, 1e-6)
    blur_effect = _blur_effect(luma)
    sharpness = _saturate(laplacian_var, SHARPNESS_SCALE)

    # Percentiles of the denoised luma: grain must not pass for contrast.
    hist = cv2.calcHist([np.clip(smooth, 0, 255).astype(np.uint8)], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / max(float(hist.sum()), 1.0)
    p5, p95, p99 = (float(np.searchsorted(cdf, q)) for q in (0.05, 0.95, 0.99))
    raw_hist = cv2.calcHist([luma8], [0], None, [256], [0, 256]).ravel() / float(luma8.size)
    mean_luma = float(cv2.mean(luma8)[0])
    shadows = float(raw_hist[:5].sum())  # share of luma at 0..4
    highlights = float(raw_hist[251:].sum())  # share of luma at 251..255

    exposure = _exposure(mean_luma, shadows, highlights)
    contrast = _saturate(p95 - p5, CONTRAST_SCALE)
    thumb = _thumbnail(rgb)
    colorfulness_m = _colorfulness(cv2.pyrDown(rgb))
    colorfulness = _saturate(colorfulness_m, COLORFULNESS_SCALE)
    spread = _spread(thumb)

    score = (
        WEIGHTS["sharpness"] * sharpness
        + WEIGHTS["exposure"] * exposure
        + WEIGHTS["contrast"] * contrast
        + WEIGHTS["colorfulness"] * colorfulness
    )
    rejected = None
    if p99 < BLACK_P99_LUMA and 1.0 - cdf[BLACK_BRIGHT_LUMA] < BLACK_BRIGHT_SHARE:
        rejected = "black"
    elif spread < UNIFORM_SPREAD and laplacian_var < UNIFORM_LAPLACIAN_VAR:
        rejected = "uniform"
    elif sharpness < BLUR_SHARPNESS_MAX and (
        laplacian_var < NO_EDGES_LAPLACIAN_VAR
        or (coarse_var >= MIN_COARSE_VAR and detail_ratio < BLUR_DETAIL_RATIO)
        or blur_effect > BLUR_EFFECT_MAX
    ):
        rejected = "blurred"

    return FrameQuality(
        quality_score=float(np.clip(score, 0.0, 1.0)),
        sharpness=sharpness,
        exposure=exposure,
        contrast=contrast,
        colorfulness=colorfulness,
        rejected=rejected,
        extra={
            "laplacian_var": laplacian_var,
            "detail_ratio": float(detail_ratio),
            "blur_effect": float(blur_effect),
            "mean_luma": mean_luma,
            "luma_p5": p5,
            "luma_p95": p95,
            "clipped_shadows": shadows,
            "clipped_highlights": highlights,
            "colorfulness_m": float(colorfulness_m),
            "thumbnail_spread": float(spread),
        },
    )


def pick_best(candidates: Sequence[Candidate]) -> tuple[Candidate, FrameQuality]:
    """The best non-rejected candidate, or the best of all when every one is rejected.

    Equal scores go to the candidate nearest the middle of the scene (the
    candidates' time span), where a shot is least likely to be mid-transition.
    """
    if not candidates:
        raise ValueError("pick_best needs at least one candidate")
    return rank_candidates(candidates)[0]


def rank_candidates(candidates: Sequence[Candidate]) -> list[tuple[Candidate, FrameQuality]]:
    """Every candidate scored, best first: non-rejected before rejected, then by score, then nearest the middle.

    The first is :func:`pick_best`'s choice (one rule for both); the next ones are
    what ``VIDX_FRAMES_PER_SCENE`` > 1 embeds beside it.
    """
    scored = [(candidate, score_frame(candidate.image)) for candidate in candidates]
    if not scored:
        return []
    times = [c.time_s for c in candidates]
    middle = (min(times) + max(times)) / 2.0
    return sorted(
        scored,
        key=lambda pair: (pair[1].rejected is None, round(pair[1].quality_score, 6), -abs(pair[0].time_s - middle)),
        reverse=True,
    )


# --- measures -------------------------------------------------------------------


def _analysis_image(image: np.ndarray) -> np.ndarray:
    """The frame at the fixed analysis area.

    First a box average over k x k blocks for the largest whole k that does
    not undershoot the target (OpenCV's fast integer path of INTER_AREA),
    then one Gaussian-prefiltered bilinear step of less than 2x: close to true area averaging
    and several times faster than INTER_AREA at fractional factors.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    scale = math.sqrt(ANALYSIS_PIXELS / float(height * width))
    if scale >= 1.0:
        return np.ascontiguousarray(image)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    factor = int(1.0 / scale)
    if factor >= 2:
        rows, cols = (height // factor) * factor, (width // factor) * factor
        image = cv2.resize(image[:rows, :cols], (cols // factor, rows // factor), interpolation=cv2.INTER_AREA)
    remaining = image.shape[1] / float(target[0])
    if remaining > 1.05:  # anti-alias the last step like an area average of that width would
        image = cv2.GaussianBlur(image, (0, 0), 0.5 * math.sqrt(remaining * remaining - 1.0))
    return cv2.resize(image, target, interpolation=cv2.INTER_LINEAR)


def _laplacian_var(smooth: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: the energy of the finest edges."""
    _, std = cv2.meanStdDev(cv2.Laplacian(smooth, cv2.CV_32F, ksize=1))
    return float(std[0, 0]) ** 2


def _coarse_laplacian_var(luma: np.ndarray) -> float:
    """The same measure with the frame shrunk 4 times: what its large structures give.

    Natural images look alike at every scale, so a sharp frame has about as
    much edge energy per pixel at full analysis size as when shrunk; blur
    removes the fine scale and keeps the coarse one.
    """
    coarse = cv2.pyrDown(cv2.pyrDown(luma))  # Gaussian pyramid: anti-aliased halvings, fast
    return _laplacian_var(cv2.GaussianBlur(coarse, (0, 0), DENOISE_SIGMA))


def _blur_effect(luma: np.ndarray) -> float:
    """Crete-Roffet et al. (2007) no-reference blur: 0 sharp .. 1 fully blurred.

    Blurring a sharp frame again removes much of its neighbour-pixel
    variation; blurring an already blurred frame changes little. Taken as the
    worse of the horizontal and vertical direction, so motion blur counts.
    """
    worst = 0.0
    for kernel, step in (((9, 1), (slice(None), slice(1, None))), ((1, 9), (slice(1, None), slice(None)))):
        back = tuple(slice(None, -1) if part.start else part for part in step)
        blurred = cv2.blur(luma, kernel)  # cv2 kernel sizes are (width, height)
        d_frame = cv2.absdiff(luma[step], luma[back])
        d_blur = cv2.absdiff(blurred[step], blurred[back])
        total = float(cv2.sumElems(d_frame)[0])
        if total <= 1e-6:
            return 1.0
        lost = float(cv2.sumElems(np.maximum(cv2.subtract(d_frame, d_blur), 0.0))[0])
        worst = max(worst, (total - lost) / total)
    return worst


def _exposure(mean_luma: float, shadows: float, highlights: float) -> float:
    """1 for a mid-grey mean, falling towards black and white; clipped areas cost extra.

    A few percent of clipped pixels is normal (specular highlights, black
    bars, deep shadows); only the excess is penalised, highlights three times
    as much as shadows because blown-out areas hold no detail at all and
    black bars are common.
    """
    centred = (mean_luma / 255.0 - 0.5) / 0.5
    base = 1.0 - centred * centred
    clip_penalty = 3.0 * max(0.0, highlights - 0.02) + 1.0 * max(0.0, shadows - 0.1)
    return float(np.clip(base - clip_penalty, 0.0, 1.0))


def _colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M on 0..255 RGB."""
    r, g, b = cv2.split(rgb.astype(np.float32))
    rg_mean, rg_std = cv2.meanStdDev(r - g)
    yb_mean, yb_std = cv2.meanStdDev(0.5 * (r + g) - b)
    std = math.hypot(float(rg_std[0, 0]), float(yb_std[0, 0]))
    mean = math.hypot(float(rg_mean[0, 0]), float(yb_mean[0, 0]))
    return std + 0.3 * mean


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = THUMB_LONG_SIDE / float(max(height, width))
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _spread(thumb: np.ndarray) -> float:
    """Largest 1-99 percentile range of any channel of the thumbnail: is any structure there at all?"""
    values = np.sort(thumb.reshape(-1, 3), axis=0)
    count = values.shape[0]
    low = values[int(0.01 * (count - 1))].astype(np.float32)
    high = values[int(round(0.99 * (count - 1)))].astype(np.float32)
    return float((high - low).max())


def _saturate(value: float, scale: float) -> float:
    """Map 0..inf to 0..1, linear near 0, flattening out past ``scale``."""
    return float(1.0 - math.exp(-max(value, 0.0) / scale))
