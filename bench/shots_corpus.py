"""A varied corpus of short clips with known boundaries, per transition class (cached in bench/.cache/shots/).

Photographs (scikit-image's bundled sample images) and lavfi patterns are
filmed with a moving virtual camera (slow pans, slow zooms, grain, a
little shake) and joined by every kind of transition ffmpeg's xfade
offers, grouped into classes; other clips hold events that are *not*
boundaries (a light switched on, hand-held shake, a fast zoom, a whip
pan, flashes) inside shots joined by hard cuts.

Splits: ``tune`` (what the detector was developed on); ``held`` (other
photographs, other xfade variants, other seeds; its errors were looked at
once during development, so it is no longer blind); ``final`` (held's
photographs and variants, fresh seeds; never looked at before reporting).
Each clip is deterministic from its name.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import videogen as vg

CACHE = Path(__file__).resolve().parent / ".cache" / "shots"
SIZE = (320, 180)
FPS = 25

_PHOTOS = {
    "tune": ["coffee.png", "astronaut.png", "chelsea.png", "rocket.jpg", "camera.png", "brick.png", "coins.png",
             "ihc.png"],
    "held": ["motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "gravel.png", "moon.png", "grass.png",
             "horse.png", "color.png", "page.png", "cell.png"],
}
_PATTERNS = {
    "tune": [vg.SOURCES[0], vg.SOURCES[1], vg.SOURCES[5]],
    "held": [vg.SOURCES[2], vg.SOURCES[4], vg.SOURCES[7]],
}
# Transition classes -> xfade names, split so the held-out set has variants never tuned on.
CLASSES: dict[str, dict[str, list[str]]] = {
    "cut": {"tune": ["cut"], "held": ["cut"]},
    "dissolve": {"tune": ["dissolve", "fade"], "held": ["dissolve", "fadegrays", "fadeslow"]},
    "fade_black": {"tune": ["fadeblack"], "held": ["fadeblack"]},
    "fade_white": {"tune": ["fadewhite"], "held": ["fadewhite"]},
    "wipe": {"tune": ["wipeleft", "wipeup", "wipetl", "smoothleft"],
             "held": ["wiperight", "wipedown", "wipebr", "smoothup", "diagtr"]},
    "slide": {"tune": ["slideleft", "slideup"], "held": ["slideright", "slidedown"]},
    "shape": {"tune": ["circleopen", "rectcrop", "radial", "vertopen", "hlslice", "pixelize"],
              "held": ["circleclose", "circlecrop", "horzclose", "diagbl", "vdslice", "squeezeh", "zoomin"]},
}
# Events inside a shot that are not boundaries.
EVENTS = ["light", "shake", "zoom", "whip", "flash"]
SPLITS = ("tune", "held", "final")


@dataclass(frozen=True)
class Clip:
    name: str
    split: str
    cls: str


def _photo_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _camera(rng: random.Random, source: str) -> str:
    """A virtual camera move over ``source``: slow pan, slow zoom, hold with grain, or light shake."""
    move = rng.choice(["pan", "zoom", "hold", "shake"])
    if move == "pan":
        return vg.with_pan(source, rng.uniform(5.0, 9.0))
    if move == "zoom":
        return (f"{source},zoompan=z='1+0.004*in':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:"
                "s={w}x{h}:fps={fps}")
    if move == "shake":
        return vg.with_shake(source, 0.02)
    return source + ",noise=alls=5:allf=t"


def _material(split: str) -> str:
    """Which photographs and xfade variants a split uses (``final`` shares held's, with fresh seeds)."""
    return "tune" if split == "tune" else "held"


def _sources(split: str, rng: random.Random) -> list[str]:
    split = _material(split)
    photos = [vg.photo_source(_photo_dir() / p, 1.0) for p in _PHOTOS[split]]
    pool = photos + _PATTERNS[split]
    rng.shuffle(pool)
    return pool


def clip_spec(clip: Clip) -> tuple[list[vg.Shot], list[vg.Transition]]:
    rng = random.Random(clip.name)
    pool = _sources(clip.split, rng)
    n = 6
    shots, transitions = [], []
    for i in range(n):
        frames = rng.randint(70, 100)
        source = _camera(rng, pool[i % len(pool)]) if clip.cls not in EVENTS else pool[i % len(pool)]
        if clip.cls in EVENTS:
            source = _event(clip.cls, source, frames, rng)
        shots.append(vg.Shot(source, frames))
        if i:
            if clip.cls in EVENTS or clip.cls == "cut":
                transitions.append(vg.CUT)
            else:
                kind = rng.choice(CLASSES[clip.cls][_material(clip.split)])
                transitions.append(vg.Transition(kind, rng.randint(10, 25)))
    return shots, transitions


def _event(kind: str, source: str, frames: int, rng: random.Random) -> str:
    at = rng.randint(20, frames - 25)
    if kind == "light":
        return vg.with_light_step(source, at, rng.choice([0.2, -0.2, 0.3]), warm=rng.random() < 0.5)
    if kind == "shake":
        return vg.with_shake(source, rng.uniform(0.04, 0.08))
    if kind == "zoom":
        return vg.with_zoom(source, at, rng.randint(5, 10), rng.uniform(2.0, 3.0), out=rng.random() < 0.7)
    if kind == "whip":
        return vg.with_whip_pan(source, at, rng.randint(4, 8))
    return vg.with_flash(source, at, rng.choice([1, 2]))


def clips(split: str | None = None, per_class: int = 2) -> list[Clip]:
    out = []
    for sp in SPLITS:
        if split and sp != split:
            continue
        for cls in [*CLASSES, *EVENTS]:
            for k in range(per_class):
                out.append(Clip(f"{sp}-{cls}-{k}", sp, cls))
    return out


def build(clip: Clip) -> tuple[Path, list[vg.Boundary], int]:
    """The clip's video and ground truth, generated on first use."""
    CACHE.mkdir(parents=True, exist_ok=True)
    video = CACHE / f"{clip.name}.mp4"
    truth = video.with_suffix(".json")
    if not (video.exists() and truth.exists()):
        shots, transitions = clip_spec(clip)
        tmp = video.with_suffix(".part.mp4")
        _, bounds, frames = vg.make_timeline(tmp, shots, transitions, size=SIZE, fps=FPS)
        tmp.replace(video)
        truth.write_text(json.dumps({"frames": frames, "boundaries": [b.__dict__ for b in bounds]}))
    data = json.loads(truth.read_text())
    return video, [vg.Boundary(**b) for b in data["boundaries"]], data["frames"]


if __name__ == "__main__":
    for c in clips():
        path, bounds, frames = build(c)
        print(c.name, frames, [(b.kind, b.first, b.last) for b in bounds])
