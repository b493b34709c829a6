"""The input contract of a model: from a decoded grayscale X-ray to the (size, size) uint8 array it sees.

One Preprocessing object is stored with every run (model.json) and loaded from there by every path that
feeds the model (train, evaluate, stress, predict, serve, export), so they cannot drift apart. Its key is
part of every cache key.

The steps, in order, each chosen to remove an acquisition cue while keeping the anatomy:
- border: "crop" cuts away black collimation borders (rows and columns with almost no exposure), which
  are far more common in one class of the training batch than in the other; "frame" also blanks the
  outer 10% of each side after resizing (arms, shoulders, collimation edges: rarely lung), so nothing
  at the image edge can carry a label; "thorax" cuts the X-ray to the box of its lung fields plus 5% of it
  on every side (cxr.data.thorax; the whole X-ray where no box spanning the middle is found), so that the
  lungs fill the same share of every input however wide the X-ray was framed (measured, not used by the
  demo: docs/generalization.md, "Thorax crop");
- resize: "squash" (the shared copies were squashed already), "crop" the centre square, or "pad" to a
  square, so the aspect ratio of an original does not become a distorted chest;
- intensity: "equalize" (histogram equalization, OpenCV), "clahe" (contrast-limited adaptive
  equalization, OpenCV), or "exact": exact histogram equalization (Coltuc et al., IEEE TIP 2006), where
  pixels of equal grey level are ordered by their neighbourhood mean, so every image leaves with the same
  uniform histogram: exposure, gamma, contrast and the share of clipped pixels carry no label. With
  "frame", the intensity statistics are taken inside the frame only.
"""

from dataclasses import asdict, dataclass, replace

import numpy as np

VERSION = 1  # bump when any step changes: it is part of every cache key
RESIZE_MODES = ("squash", "crop", "pad")
INTENSITY_MODES = ("none", "equalize", "clahe", "exact")
BORDER_MODES = ("none", "crop", "frame", "thorax")
FRAME = 0.1  # share of each side blanked by border="frame"
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

    def at_size(self, size: int) -> "Preprocessing":
        """The same steps at another size (for display next to a heatmap)."""
        return replace(self, size=size)

    def apply(self, gray: np.ndarray) -> np.ndarray:
        """2-D uint8 grayscale of any size -> (size, size) uint8."""
        from PIL import Image

        if self.border == "thorax":
            from cxr.data.thorax import crop_to_thorax

            gray = crop_to_thorax(gray)
        elif self.border != "none":
            gray = crop_dark_borders(gray)
        square = Image.fromarray(_to_square(gray, self.resize))
        out = np.array(square.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=2.0))
        k = frame_px(self.size) if self.border == "frame" else 0
        inner = out[k: self.size - k, k: self.size - k].copy()
        out[:] = 0
        out[k: self.size - k, k: self.size - k] = _normalise(inner, self.intensity)
        return out


def _normalise(image: np.ndarray, mode: str) -> np.ndarray:
    import cv2

    if mode == "equalize":
        return cv2.equalizeHist(image)
    if mode == "clahe":
        tiles = max(2, image.shape[0] // 32)
        return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(tiles, tiles)).apply(image)
    if mode == "exact":
        return exact_equalize(image)
    return image


def exact_equalize(image: np.ndarray) -> np.ndarray:
    """Exact histogram equalization: rank pixels by (grey level, 3x3 mean), spread the ranks over 0..255."""
    import cv2

    local_mean = cv2.blur(image.astype(np.float32), (3, 3))
    order = np.lexsort((local_mean.ravel(), image.ravel()))
    ranks = np.empty(order.size, np.int64)
    ranks[order] = np.arange(order.size)
    return (ranks * 256 // order.size).astype(np.uint8).reshape(image.shape)


# The project's choice against acquisition cues (see `cxr audit`); the seed's models keep plain squashing.
ROBUST = Preprocessing(128, "squash", "exact", "frame")


def frame_px(size: int) -> int:
    """Width in pixels of the blank frame at this image size (preprocessing and vgg16_e2e share it)."""
    return round(FRAME * size)


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
