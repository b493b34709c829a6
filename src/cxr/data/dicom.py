"""DICOM radiographs via pydicom: modality LUT, VOI LUT / window, MONOCHROME1 inversion, 8 to 16 bits."""

import io
import logging

import numpy as np

from cxr.data.pixels import ImageError, to_uint8


def read_dicom(data: bytes) -> np.ndarray:
    """Bytes of a DICOM file -> 2-D uint8 image as a radiologist would see it (bone bright)."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
        # pydicom logs every failed decoder with a traceback; the one ImageError below says it all.
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    except ImportError:
        raise ImageError("reading DICOM needs pydicom: pip install -e '.[dicom]' in the cxr folder") from None
    ds = None
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
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            raise ImageError(f"compressed DICOM ({syntax.name}) that no installed decoder reads "
                             "(pydicom's optional pixel-data handlers, e.g. pylibjpeg, add codecs)") from None
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ImageError(f"unreadable DICOM: {first_line}") from None
    try:
        pixels = apply_modality_lut(pixels, ds)
        pixels = apply_voi_lut(pixels, ds)  # VOI LUT sequence, or WindowCenter/WindowWidth; none: unchanged
    except Exception as exc:  # e.g. a window width of 0
        raise ImageError(f"DICOM with an invalid modality or VOI LUT (window): {exc}") from None
    image = to_uint8(pixels)
    if photometric == "MONOCHROME1":  # low values are bright in MONOCHROME1
        image = 255 - image
    return image
