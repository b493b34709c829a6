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


# Start-of-frame markers (baseline, extended, progressive, lossless...), without DHT, JPG and DAC.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field


def _plain_jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(height, width, components, bits) of a complete JPEG without EXIF; None for anything else."""
    if data[:2] != b"\xff\xd8" or not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        length = int.from_bytes(data[at + 2: at + 4], "big")
        if marker == 0xE1 and data[at + 4: at + 10] == b"Exif\0\0":
            return None  # orientation: left to the general path
        if marker in _SOF and at + 10 <= len(data):
            bits, height, width, components = data[at + 4], *(int.from_bytes(data[i: i + 2], "big")
                                                               for i in (at + 5, at + 7)), data[at + 9]
            return height, width, components, bits
        if marker == 0xDA:  # start of scan before any frame header
            return None
        at += 2 + length
    return None


def _fast_jpeg(data: bytes, size: int) -> np.ndarray | None:
    """A plain JPEG's grey levels decoded by OpenCV, which gives exactly what the general path below gives
    for such a file (the same libjpeg decode to the luma plane) at a fraction of its Python overhead; None
    where the file is not plain: EXIF, other than 8-bit grey or YCbCr, over the pixel limit, or large
    enough that the general path decodes it at a reduced scale (both sides at least 4 x size)."""
    import cv2

    header = _plain_jpeg_header(data)
    if header is None:
        return None
    height, width, components, bits = header
    if bits != 8 or components not in (1, 3) or height * width > MAX_PIXELS or min(height, width) >= 4 * size:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)


def read_grayscale(data: bytes, size: int) -> np.ndarray:
    """Bytes of an image file -> 2-D uint8 grayscale, JPEGs decoded at a reduced scale (at least 2 x size)."""
    if not data:
        raise ImageError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    fast = _fast_jpeg(data, size)
    if fast is not None and min(fast.shape) >= 8:
        return fast
    img = Image.fromarray(read_dicom(data)) if is_dicom(data) else _grayscale(_open_pil(data, size))
    if img.width < 8 or img.height < 8:
        raise ImageError(f"image is only {img.width}x{img.height} px")
    return np.asarray(img, dtype=np.uint8)


def decode(data: bytes, preprocessing: Preprocessing) -> np.ndarray:
    """Bytes of an image file -> the (size, size) uint8 array a model with this preprocessing sees."""
    return preprocessing.apply(read_grayscale(data, preprocessing.size))
