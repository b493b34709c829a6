"""The input contract of a model: from a decoded grayscale X-ray to the (size, size) uint8 array it sees.

One Preprocessing object is stored with every run (model.json) and loaded from there by every path that
feeds the model (train, evaluate, stress, predict, serve, export), so they cannot drift apart. Its key is
part of every cache key.

The steps, in order, each chosen to remove an acquisition cue while keeping the anatomy:
- border: "crop" cuts away black collimation borders (rows and columns with almost no exposure), which
  are far more common in one class of the training batch than in the other;
- resize: "squash" (the shared copies were squashed already), "crop" the centre square, or "pad" to a
  square, so the aspect ratio of an original does not become a distorted chest;
- intensity: "equalize" (global histogram equalization) or "clahe" (contrast-limited adaptive
  equalization, OpenCV), so exposure, gamma and contrast settings of a scanner carry no label.
"""

from dataclasses import asdict, dataclass, replace

import numpy as np

VERSION = 1  # bump when any step changes: it is part of every cache key
RESIZE_MODES = ("squash", "crop", "pad")
INTENSITY_MODES = ("none", "equalize", "clahe")
BORDER_MODES = ("none", "crop")
# A row or column counts as exposed when its mean is above this share of the image's brightest rows.
EXPOSED_SHARE = 0.25
MIN_KEPT = 0.6  # never crop away more than 40% of a side: a dark image is not a border


@dataclass(frozen=True)
class Preprocessing:
    size: int = 128
    resize: str = "squash"
    intensity: str = "none"
    border: str = "none"
    version: int = VERSION

    def __post_init__(self):
        for value, allowed, name in ((self.resize, RESIZE_MODES, "resize"),
                                     (self.intensity, INTENSITY_MODES, "intensity"),
                                     (self.border, BORDER_MODES, "border")):
            if value not in allowed:
                raise ValueError(f"preprocessing {name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.size < 8:
            raise ValueError(f"preprocessing size must be at least 8 px, not {self.size}")

    @property
    def key(self) -> str:
        """Names a cache folder: changes whenever the output of apply() can change."""
        return f"{self.size}px-{self.resize}-{self.intensity}-{self.border}-v{self.version}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, info: dict) -> "Preprocessing":
        """The run's preprocessing; runs from before it was stored were plain squashing at their size."""
        stored = info.get("preprocessing")
        return cls(size=int(info["size"])) if stored is None else cls(**stored)

    def at_size(self, size: int) -> "Preprocessing":
        """The same steps at another size (for display next to a heatmap)."""
        return replace(self, size=size)

    def apply(self, gray: np.ndarray) -> np.ndarray:
        """2-D uint8 grayscale of any size -> (size, size) uint8."""
        import cv2
        from PIL import Image

        if self.border == "crop":
            gray = crop_dark_borders(gray)
        square = Image.fromarray(_to_square(gray, self.resize))
        out = np.asarray(square.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=2.0))
        if self.intensity == "equalize":
            out = cv2.equalizeHist(out)
        elif self.intensity == "clahe":
            tiles = max(2, self.size // 32)
            out = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(tiles, tiles)).apply(out)
        return out


def crop_dark_borders(gray: np.ndarray) -> np.ndarray:
    """The image without rows and columns at its edges that received (almost) no exposure."""
    rows, cols = _exposed_span(gray.mean(axis=1)), _exposed_span(gray.mean(axis=0))
    return gray[rows, cols]


def _exposed_span(profile: np.ndarray) -> slice:
    cut = EXPOSED_SHARE * np.percentile(profile, 90)
    exposed = np.flatnonzero(profile > cut)
    if exposed.size == 0:
        return slice(None)
    first, last = int(exposed[0]), int(exposed[-1]) + 1
    if last - first < MIN_KEPT * profile.size:
        return slice(None)
    return slice(first, last)


def _to_square(gray: np.ndarray, mode: str) -> np.ndarray:
    h, w = gray.shape
    if mode == "squash" or h == w:
        return gray
    side = min(h, w) if mode == "crop" else max(h, w)
    if mode == "crop":
        top, left = (h - side) // 2, (w - side) // 2
        return gray[top: top + side, left: left + side]
    out = np.zeros((side, side), np.uint8)  # pad: black, like film outside the field
    top, left = (side - h) // 2, (side - w) // 2
    out[top: top + h, left: left + w] = gray
    return out
