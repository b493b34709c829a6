"""What every decoder shares: the error type for unusable images and the stretch to 8 bits."""

import numpy as np

from cxr.errors import DataError


class ImageError(DataError, ValueError):
    """An image that cannot be used, with a readable reason."""


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Stretch a high-bit-depth or float grayscale array to 0..255 by its own range."""
    pixels = pixels.astype(np.float32)
    finite = np.isfinite(pixels)
    if not finite.all():
        if not finite.any():
            raise ImageError("image has no finite pixel values (all NaN or infinite)")
        pixels = np.where(finite, pixels, pixels[finite].min())  # NaN/inf: no signal, shown as the darkest
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, np.uint8)
    return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)
