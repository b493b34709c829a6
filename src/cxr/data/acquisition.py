"""Acquisition shift: how another X-ray console, detector or archive changes an image, in two separate sets.

Another hospital's NORMAL X-rays can look unlike anything in the training batch: a harder, edge-enhanced
processing curve, exposure values and clock times burned into the corners, another detector's grain,
resolution lost on the way to the archive. A validation split that shows none of these cannot choose a model
that survives them, and a model trained against exactly the changes it is validated on passes that
validation without being robust. So there are two sets here, of different forms:

- `VALIDATION_CHANGES` (numpy, on decoded X-rays): the held-out families that the validation split is judged
  on (`cxr stress`, the selection rule, the threshold). Deterministic per image.
- `acquisition_augmentation` (TensorFlow, on training batches): random processing curves, sharpening,
  burned-in text, noise and blur, each parameterised differently from its validation counterpart (a gamma
  and a window instead of an S-curve; a 3 x 3 sharpening instead of a wide unsharp mask; another font, other
  strings and other places for the text; additive instead of signal-dependent noise; blur instead of
  down- and up-sampling). CLAHE and JPEG re-compression have no training counterpart at all.

`SEEN_IN_TRAINING` names, for every validation family, the training family that resembles it, so a report
can say which families a run was trained against.

Every change takes a `strength` (0: the image unchanged, 1: the level validation uses) and returns uint8.
"""

import io
import zlib

import numpy as np

ACQUISITION_MODES = ("none", "random")  # TrainConfig.acquisition
# Validation family -> the training family of a related form (None: never trained against in any form).
SEEN_IN_TRAINING = {
    "processing_s_curve": "tone",
    "processing_clahe_strong": None,
    "edge_enhanced": "sharpen",
    "burned_in_text": "text",
    "detector_grain": "noise",
    "resolution_loss": "blur",
    "jpeg_recompressed": None,
}


def _rng(image: np.ndarray) -> np.random.Generator:
    """A generator fixed by the image's pixels: the same X-ray gets the same change in every run."""
    return np.random.default_rng(zlib.crc32(np.ascontiguousarray(image).tobytes()))


def _blend(image: np.ndarray, changed: np.ndarray, strength: float) -> np.ndarray:
    out = (1.0 - strength) * image.astype(np.float32) + strength * changed.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def s_curve(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """A steep sigmoid tone curve around mid-grey: the high-contrast look of a hard processing setting."""
    x = image.astype(np.float32) / 255.0
    ends = 1.0 / (1.0 + np.exp(-8.0 * np.array([-0.5, 0.5])))
    curve = (1.0 / (1.0 + np.exp(-8.0 * (x - 0.5))) - ends[0]) / (ends[1] - ends[0])
    return _blend(image, 255.0 * curve, strength)


def clahe_strong(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Contrast-limited adaptive equalisation with a high clip limit, as some consoles apply it."""
    import cv2

    return _blend(image, cv2.createCLAHE(clipLimit=8.0, tileGridSize=(8, 8)).apply(image), strength)


def edge_enhanced(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Unsharp masking with a wide kernel (about 2% of the image) and a large gain: edge-enhanced processing."""
    import cv2

    sigma = max(1.0, 0.02 * min(image.shape))
    x = image.astype(np.float32)
    sharpened = x + 2.0 * (x - cv2.GaussianBlur(x, (0, 0), sigma))
    return _blend(image, np.clip(sharpened, 0, 255), strength)


# Exposure values, clock times, dates and side markers, as consoles print them into the corners.
def _annotations(rng: np.random.Generator) -> list[str]:
    return [f"kVp {rng.integers(55, 90)}  mAs {rng.integers(5, 40) / 10:.1f}",
            f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}",
            f"EI {rng.integers(100, 900)}", "PORTABLE", "AP SUPINE", rng.choice(["R", "L"])]


def burned_in_text(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """White annotations in Hershey fonts near the corners and edges; `strength` scales the text size."""
    import cv2

    if strength <= 0:
        return image.copy()
    rng, out = _rng(image), image.copy()
    h, w = image.shape
    scale = strength * min(h, w) / 400.0
    thickness = max(1, round(2 * scale))
    corners = [(0.03, 0.08), (0.62, 0.08), (0.03, 0.97), (0.62, 0.97), (0.40, 0.06), (0.85, 0.50)]
    for text, (fx, fy) in zip(_annotations(rng), rng.permutation(corners)):
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN]))
        size = scale * (1.6 if font == cv2.FONT_HERSHEY_PLAIN else 1.0) * (2.0 if len(text) == 1 else 1.0)
        cv2.putText(out, text, (int(fx * w), int(fy * h)), font, size, 255, thickness, cv2.LINE_AA)
    return out


def detector_grain(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Signal-dependent (quantum-like) grain plus faint line noise of a detector's read-out rows."""
    rng = _rng(image)
    x = image.astype(np.float32)
    grain = rng.normal(0.0, 1.0, image.shape) * 14.0 * np.sqrt(np.maximum(x, 1.0) / 255.0)
    rows = rng.normal(0.0, 3.0, (image.shape[0], 1))
    return _blend(image, np.clip(x + grain + rows, 0, 255), strength)


def resolution_loss(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Down-sampled by up to 3x (area) and up-sampled again (cubic): a low-resolution archive copy."""
    factor = 1.0 + 2.0 * strength
    return resampled(image, factor) if factor > 1.0 else image.copy()


def jpeg_recompressed(image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Saved again as a JPEG of quality 95 - 80 x strength (15 at full strength)."""
    return recompressed(image, int(round(95 - 80 * strength))) if strength > 0 else image.copy()


def resampled(image: np.ndarray, factor: float, upsampling: str = "cubic") -> np.ndarray:
    """Down-sampled by `factor` (area) and up-sampled back to its size ("cubic" or "linear")."""
    import cv2

    h, w = image.shape
    small = cv2.resize(image, (max(4, round(w / factor)), max(4, round(h / factor))), interpolation=cv2.INTER_AREA)
    up = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}[upsampling]
    return cv2.resize(small, (w, h), interpolation=up)


def recompressed(image: np.ndarray, quality: int) -> np.ndarray:
    """Saved again as a JPEG of this quality and read back."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("L"))


VALIDATION_CHANGES = {
    "processing_s_curve": s_curve,
    "processing_clahe_strong": clahe_strong,
    "edge_enhanced": edge_enhanced,
    "burned_in_text": burned_in_text,
    "detector_grain": detector_grain,
    "resolution_loss": resolution_loss,
    "jpeg_recompressed": jpeg_recompressed,
}
