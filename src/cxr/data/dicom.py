"""DICOM radiographs via pydicom: modality LUT, VOI LUT / window, MONOCHROME1 inversion, 8 to 16 bits."""

import io

import numpy as np

from cxr.data.pixels import ImageError, to_uint8


def read_dicom(data: bytes) -> np.ndarray:
    """Bytes of a DICOM file -> 2-D uint8 image as a radiologist would see it (bone bright)."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise ImageError("reading DICOM needs pydicom: pip install 'cxr[dicom]'") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds:
            raise ImageError("DICOM file has no pixel data")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise ImageError(f"multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported")
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ImageError(f"colour DICOM ({photometric}) is not supported; expected a grayscale radiograph")
        pixels = ds.pixel_array
    except ImageError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageError(f"unreadable DICOM: {exc}") from None
    pixels = apply_modality_lut(pixels, ds)
    pixels = apply_voi_lut(pixels, ds)  # VOI LUT sequence, or WindowCenter/WindowWidth; none: unchanged
    image = to_uint8(pixels)
    if photometric == "MONOCHROME1":  # low values are bright in MONOCHROME1
        image = 255 - image
    return image
