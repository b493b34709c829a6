"""What every decoder shares: the error type for unusable images and the stretch to 8 bits."""

import numpy as np


class ImageError(ValueError):
    """An image that cannot be used, with a readable reason."""


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Stretch a high-bit-depth or float grayscale array to 0..255 by its own range."""
    pixels = pixels.astype(np.float32)
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, np.uint8)
    return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)
