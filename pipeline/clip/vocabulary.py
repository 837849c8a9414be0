"""The words vidx ranks frames against: zero-shot labels and description vocabularies.

Torch-free, so the CLI and tests read it without the model. The built-in
label list is everyday visual concepts that turn up in footage (ImageNet's
1000 classes are mostly dog breeds and lab equipment, poor tags for video);
``VIDX_LABELS_FILE`` replaces it. The description vocabularies follow the
CLIP-interrogator recipe: one ranked list per slot of the phrase (setting,
shot type, lighting); the subject slot is the scene's top label.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Prompt templates a label is embedded with (averaged, as in CLIP's zero-shot recipe).
# Three, in the spirit of open_clip's OPENAI_IMAGENET_TEMPLATES: all 80 would make the
# one-off vocabulary embedding ~27x slower on CPU (ViT-B-32's text tower costs ~60 ms of
# CPU per prompt; bench/labels.py), for a gain of a point or two of zero-shot accuracy.
LABEL_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a still frame from a video of a {}.",
)

BUILTIN_LABELS: tuple[str, ...] = (
    # people
    "person", "man", "woman", "child", "baby", "crowd", "group of people", "face", "hands", "athlete",
    "musician", "dancer", "soldier", "police officer", "doctor", "chef", "student", "worker",
    # animals
    "dog", "cat", "horse", "cow", "sheep", "bird", "fish", "insect", "wild animal", "elephant", "lion",
    # vehicles and transport
    "car", "truck", "bus", "train", "airplane", "helicopter", "boat", "ship", "bicycle", "motorcycle",
    "traffic", "road", "highway", "bridge", "railway", "airport",
    # places, outdoors
    "city street", "city skyline", "building", "house", "village", "park", "garden", "forest", "tree",
    "field", "farm", "mountain", "desert", "beach", "ocean", "lake", "river", "waterfall", "snow",
    "sky", "clouds", "sunset", "night sky", "fireworks", "fire", "smoke", "rain", "storm",
    # places, indoors
    "room", "kitchen", "living room", "bedroom", "office", "classroom", "hospital", "restaurant", "bar",
    "shop", "supermarket", "factory", "warehouse", "stage", "stadium", "gym", "church", "museum",
    "laboratory", "studio",
    # objects
    "table", "chair", "bed", "window", "door", "computer", "laptop", "phone", "screen", "television",
    "book", "paper document", "camera", "microphone", "guitar", "piano", "drum", "food", "drink",
    "bottle", "cup", "plate", "flowers", "plant", "clothes", "shoes", "bag", "money", "weapon", "tool",
    "machine", "robot", "toy", "ball", "flag", "sign", "map", "clock", "lamp",
    # activities and events
    "people talking", "interview", "speech", "meeting", "concert", "party", "wedding", "sports game",
    "football", "basketball", "tennis", "running", "swimming", "cycling", "driving", "cooking",
    "eating", "dancing", "singing", "fighting", "protest", "news broadcast", "video game", "cartoon",
    # graphics and screens
    "text", "title card", "logo", "chart", "diagram", "slide presentation", "user interface",
    "test pattern", "black screen", "abstract pattern", "animation",
)

# Description slots, ranked independently (interrogator style): "<subject>, <setting>, <shot>, <lighting>".
SETTING_PHRASES: tuple[str, ...] = (
    "indoors", "outdoors", "in a city", "on a street", "in a room", "in an office", "in a kitchen",
    "in a studio", "on a stage", "in a stadium", "in a forest", "in a field", "in the mountains",
    "on a beach", "at sea", "by a lake", "in the snow", "in the desert", "in the sky", "underwater",
    "in a car", "on a road", "in a shop", "in a restaurant", "at a party", "in a classroom",
    "in a factory", "in a park", "in a garden", "at home", "on a screen", "on a plain background",
)
SHOT_PHRASES: tuple[str, ...] = (
    "extreme close-up", "close-up shot", "medium shot", "wide shot", "aerial shot", "overhead shot",
    "low-angle shot", "high-angle shot", "handheld shot", "static shot", "tracking shot",
    "screen recording", "animation", "graphic", "black and white footage", "vintage film footage",
    "security camera footage", "smartphone video",
)
LIGHTING_PHRASES: tuple[str, ...] = (
    "in daylight", "at night", "at sunset", "at golden hour", "in bright sunlight", "in overcast light",
    "in low light", "in studio lighting", "under neon lights", "in candlelight", "backlit",
    "in dark shadows", "in colourful light", "in soft light", "in harsh light",
)
DESCRIPTION_SLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("setting", SETTING_PHRASES),
    ("shot", SHOT_PHRASES),
    ("lighting", LIGHTING_PHRASES),
)


@dataclass(frozen=True)
class Vocabulary:
    """Labels (with their templates) and the description slots, plus a digest naming them exactly."""

    labels: tuple[str, ...]
    templates: tuple[str, ...] = LABEL_TEMPLATES
    slots: tuple[tuple[str, tuple[str, ...]], ...] = DESCRIPTION_SLOTS

    @property
    def digest(self) -> str:
        """SHA-256 over everything embedded: any change makes a new text-embedding cache entry."""
        payload = json.dumps([self.labels, self.templates, self.slots], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_labels(lines: Sequence[str]) -> tuple[str, ...]:
    """Labels from a file's lines: stripped, blank lines and ``#`` comments skipped, first occurrence kept."""
    labels = (line.strip() for line in lines)
    return tuple(dict.fromkeys(label for label in labels if label and not label.startswith("#")))


def load_vocabulary(labels_file: Path | None) -> Vocabulary:
    """The built-in vocabulary, or its labels replaced by ``labels_file`` (VIDX_LABELS_FILE)."""
    if labels_file is None:
        return Vocabulary(labels=BUILTIN_LABELS)
    return Vocabulary(labels=parse_labels(Path(labels_file).read_text(encoding="utf-8").splitlines()))
