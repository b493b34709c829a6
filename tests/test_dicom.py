import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from cxr.data.images import ImageError, decode  # noqa: E402
from cxr.data.preprocess import Preprocessing  # noqa: E402

SMALL = Preprocessing(32)


def write_dicom(path, pixels, photometric="MONOCHROME2", bits=16, frames=1, **extra):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 3 if photometric == "RGB" else 1
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(h=40, w=50, top=4095):
    return np.tile(np.linspace(0, top, w), (h, 1)).astype(np.uint16)


def test_12_bit_monochrome2_keeps_bright_where_values_are_high(tmp_path):
    out = decode(write_dicom(tmp_path / "a.dcm", ramp(), bits=12).read_bytes(), SMALL)
    assert out[:, 0].mean() < 10 and out[:, -1].mean() > 245


def test_monochrome1_is_inverted(tmp_path):
    out = decode(write_dicom(tmp_path / "a.dcm", ramp(), "MONOCHROME1", bits=12).read_bytes(), SMALL)
    assert out[:, 0].mean() > 245 and out[:, -1].mean() < 10


def test_8_bit(tmp_path):
    out = decode(write_dicom(tmp_path / "a.dcm", ramp(top=255).astype(np.uint8), bits=8).read_bytes(), SMALL)
    assert out[:, 0].mean() < 10 and out[:, -1].mean() > 245


def test_window_is_applied(tmp_path):
    # Window 1000..2000 of a 0..4095 ramp: everything left of 1000 is black, right of 2000 white.
    path = write_dicom(tmp_path / "a.dcm", ramp(w=410), bits=12, WindowCenter=1500, WindowWidth=1000)
    out = decode(path.read_bytes(), Preprocessing(410))
    assert out[:, :90].max() < 5 and out[:, 210:].min() > 250
    assert 100 < out[:, 150].mean() < 155


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    pixels = ramp()
    plain = decode(write_dicom(tmp_path / "a.dcm", pixels, bits=12).read_bytes(), SMALL)
    inverted = decode(write_dicom(tmp_path / "b.dcm", pixels, bits=12, RescaleSlope=-1, RescaleIntercept=4095)
                      .read_bytes(), SMALL)
    assert np.abs(plain.astype(int) - (255 - inverted.astype(int))).max() <= 2


def test_colour_dicom_is_refused(tmp_path):
    rgb = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ImageError, match="colour DICOM"):
        decode(write_dicom(tmp_path / "c.dcm", rgb.transpose(2, 0, 1)[0:1].repeat(3, 0).transpose(1, 2, 0)
                           .reshape(20, 20, 3), "RGB", bits=8).read_bytes(), SMALL)


def test_multi_frame_dicom_is_refused(tmp_path):
    frames = np.stack([ramp(), ramp()])
    with pytest.raises(ImageError, match="multi-frame"):
        decode(write_dicom(tmp_path / "m.dcm", frames, bits=12, frames=2).read_bytes(), SMALL)
