"""Kinds of bad and unusual input files, written from one good X-ray.

Each kind is expected to end as a clear error naming the file ("error"), as an ordinary prediction
("ok": unusual but valid, such as CMYK or 16-bit), or as either ("any": a bit-flipped JPEG may still decode).
"""

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class BadFile:
    kind: str
    path: Path
    expect: str  # error | ok | any
    http: bool = True  # can be uploaded (a symlink loop or an unreadable file cannot)


def _png(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def _image_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png() -> bytes:
    """A valid PNG header claiming 100,000 x 100,000 pixels (10 G), with a tiny compressed body."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b""))


def _dicom(pixels, photometric="MONOCHROME2", frames=1, pixel_data=True, syntax=None, **extra) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.Rows, ds.Columns = "DX", *pixels.shape[-2:]
    ds.PhotometricInterpretation, ds.SamplesPerPixel = photometric, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in extra.items():
        setattr(ds, key, value)
    if pixel_data:
        data = np.asarray(pixels, np.uint16).tobytes()
        if syntax is not None:  # an encapsulated (compressed) stream no installed handler decodes
            from pydicom.encaps import encapsulate

            data = encapsulate([b"\xff\x4f\xff\x51" + os.urandom(200)])
        ds.PixelData = data
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=syntax is None)
    return buffer.getvalue()


def write_bad_files(folder: Path, good: Path) -> list[BadFile]:
    """Write every kind into `folder` (created); `good` is a real X-ray JPEG to damage."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    jpeg = good.read_bytes()
    gray = np.asarray(Image.open(good).convert("L"))
    png = _png(gray)
    small = np.asarray(Image.fromarray(gray).resize((256, 256)))
    flipped = bytearray(jpeg)
    for i in rng.integers(len(jpeg) // 4, len(jpeg) - 2, 40):
        flipped[i] ^= 1 << int(rng.integers(8))
    png_bad_crc = bytearray(png)
    png_bad_crc[len(png) // 2] ^= 0xFF
    exif = Image.fromarray(gray).getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    frames = [Image.fromarray(np.roll(small, k, axis=1)) for k in range(3)]
    ramp = np.tile(np.linspace(0, 4095, 64), (64, 1))
    from pydicom.uid import JPEG2000

    kinds: list[tuple[str, str, bytes, str]] = [
        ("zero_byte", "zero.jpeg", b"", "error"),
        ("random_bytes", "random.jpeg", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "error"),
        ("text_named_jpeg", "notes.jpeg", b"Patient notes, not an image.\n" * 20, "error"),
        ("html_named_jpeg", "page.jpeg", b"<!doctype html><html><body><h1>404</h1></body></html>", "error"),
        ("pdf_named_jpeg", "report.jpeg", b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer\n%%EOF\n", "error"),
        ("svg_named_png", "drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "error"),
        ("gzip_named_jpeg", "packed.jpeg", zlib.compress(jpeg), "error"),
        ("jpeg_header_only", "head.jpeg", jpeg[:20], "error"),
        ("jpeg_truncated_25pct", "trunc25.jpeg", jpeg[: len(jpeg) // 4], "error"),
        ("jpeg_truncated_75pct", "trunc75.jpeg", jpeg[: 3 * len(jpeg) // 4], "error"),
        ("jpeg_truncated_last_bytes", "trunc_end.jpeg", jpeg[:-200], "error"),
        ("png_header_only", "head.png", png[:33], "error"),
        ("png_truncated_50pct", "trunc50.png", png[: len(png) // 2], "error"),
        ("png_truncated_90pct", "trunc90.png", png[: 9 * len(png) // 10], "error"),
        ("png_bad_crc", "badcrc.png", bytes(png_bad_crc), "error"),
        ("jpeg_bit_flips", "flipped.jpeg", bytes(flipped), "any"),
        ("png_16bit", "sixteen.png", _png(small.astype(np.uint16) * 257), "ok"),
        ("png_16bit_noise", "noise16.png", _png(rng.integers(0, 65535, (256, 256)).astype(np.uint16)), "ok"),
        ("jpeg_cmyk", "cmyk.jpeg", _image_bytes(Image.fromarray(small).convert("CMYK"), "JPEG"), "ok"),
        ("png_palette", "palette.png", _image_bytes(Image.fromarray(small).convert("P"), "PNG"), "ok"),
        ("png_rgba_transparent", "rgba.png", _image_bytes(Image.fromarray(small).convert("RGBA"), "PNG"), "ok"),
        ("jpeg_exif_rotated", "exif.jpeg", _image_bytes(Image.fromarray(gray), "JPEG", exif=exif), "ok"),
        ("tiff_float32", "float.tiff", _image_bytes(Image.fromarray(small.astype(np.float32) / 255), "TIFF"), "ok"),
        ("tiff_float_nan", "nan.tiff", _image_bytes(Image.fromarray(np.full((64, 64), np.nan, np.float32)),
                                                    "TIFF"), "any"),
        ("bmp", "old.bmp", _image_bytes(Image.fromarray(small), "BMP"), "ok"),
        ("one_by_4000", "line.png", _png(np.zeros((1, 4000), np.uint8)), "error"),
        ("4000_by_one", "column.png", _png(np.zeros((4000, 1), np.uint8)), "error"),
        ("tiny_4x4", "tiny.png", _png(np.zeros((4, 4), np.uint8)), "error"),
        ("decompression_bomb_header", "bomb.png", _bomb_png(), "error"),
        ("animated_gif", "anim.gif", _image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
         "error"),
        ("multipage_tiff", "pages.tiff", _image_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
         "error"),
        ("dicom_no_pixel_data", "nopixels.dcm", _dicom(ramp, pixel_data=False), "error"),
        ("dicom_jpeg2000_no_handler", "j2k.dcm", _dicom(ramp, syntax=JPEG2000), "error"),
        ("dicom_monochrome1", "mono1.dcm", _dicom(ramp, "MONOCHROME1"), "ok"),
        ("dicom_multiframe", "frames.dcm", _dicom(np.stack([ramp] * 3), frames=3), "error"),
        ("dicom_zero_window", "window0.dcm", _dicom(ramp, WindowCenter=100, WindowWidth=0), "any"),
        ("dicom_garbage_after_magic", "garbage.dcm", b"\0" * 128 + b"DICM" + os.urandom(300), "error"),
        ("non_utf8_name", b"\xff\xfe-x-ray.jpeg", jpeg, "ok"),
    ]
    files = []
    for kind, name, data, expect in kinds:
        path = folder / os.fsdecode(name)  # a bytes name that is not UTF-8 stays those bytes on disk
        path.write_bytes(data)
        files.append(BadFile(kind, path, expect))
    loop = folder / "loop.jpeg"
    os.symlink(loop.name, loop)  # a link to itself
    files.append(BadFile("symlink_loop", loop, "error", http=False))
    dangling = folder / "moved.jpeg"
    os.symlink("no-such-file.jpeg", dangling)
    files.append(BadFile("dangling_symlink", dangling, "error", http=False))
    locked = folder / "locked.jpeg"
    locked.write_bytes(jpeg)
    locked.chmod(0)
    # root reads a file whatever its mode: there the file is simply predicted.
    files.append(BadFile("unreadable_file", locked, "error" if _unreadable(locked) else "ok", http=False))
    return files


def _unreadable(path: Path) -> bool:
    try:
        path.read_bytes()
        return False
    except OSError:
        return True
