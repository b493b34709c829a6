"""Decode one X-ray (JPEG, PNG, DICOM, any size and mode) into a uint8 grayscale array, then preprocess it.

Every failure is an ImageError whose message names the problem; callers add the file name.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from cxr.data.dicom import read_dicom
from cxr.data.pixels import ImageError, to_uint8
from cxr.data.preprocess import Preprocessing

# A chest radiograph is at most ~4,300 x 4,300 px; anything far beyond that is a decompression bomb.
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 200 * 1024 * 1024


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _grayscale(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "1"):
        return img.convert("L")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(to_uint8(np.asarray(img)))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels are background: put them on black, like the film around an X-ray.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return img.convert("RGB").convert("L")  # RGB, CMYK, YCbCr, P, ...


def _open_pil(data: bytes, size: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"image is {img.width}x{img.height} px, over the {MAX_PIXELS:,} pixel limit")
            if img.format == "JPEG":
                # Decode at a reduced scale (still at least 2x the target) instead of full resolution, and
                # colour JPEGs straight to grey (the decoder skips the colour planes).
                img.draft("L" if img.mode in ("RGB", "YCbCr") else img.mode, (2 * size, 2 * size))
            if getattr(img, "n_frames", 1) > 1:
                raise ImageError(f"multi-frame image ({img.n_frames} frames) is not supported")
            img.load()
            return ImageOps.exif_transpose(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"decompression bomb refused: {exc}") from None
        except Image.UnidentifiedImageError:
            raise ImageError("not an image (unrecognised format)") from None
        except OSError as exc:
            raise ImageError(f"corrupt or truncated image: {exc}") from None
        except (ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"unreadable image: {exc}") from None


def read_grayscale(data: bytes, size: int) -> np.ndarray:
    """Bytes of an image file -> 2-D uint8 grayscale, JPEGs decoded at a reduced scale (at least 2 x size)."""
    if not data:
        raise ImageError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    img = Image.fromarray(read_dicom(data)) if is_dicom(data) else _grayscale(_open_pil(data, size))
    if img.width < 8 or img.height < 8:
        raise ImageError(f"image is only {img.width}x{img.height} px")
    return np.asarray(img, dtype=np.uint8)


def decode(data: bytes, preprocessing: Preprocessing) -> np.ndarray:
    """Bytes of an image file -> the (size, size) uint8 array a model with this preprocessing sees."""
    return preprocessing.apply(read_grayscale(data, preprocessing.size))
