import io

import numpy as np
import pytest
from PIL import Image

from conftest import CHEST_XRAY, FULLRES, write_image
from cxr.data.cache import load_images, wait_for_writes
from cxr.data.images import MAX_PIXELS, ImageError, _fast_jpeg, _grayscale, _open_pil, decode, read_grayscale
from cxr.data.preprocess import Preprocessing


def blob_image(w=80, h=60):
    """Dark left half, bright right half: tells orientation and brightness apart after decoding."""
    array = np.zeros((h, w), np.uint8)
    array[:, w // 2:] = 220
    return array


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "LA", "I", "1"])
def test_every_pillow_mode_decodes_to_square_grayscale(tmp_path, mode):
    fmt = "TIFF" if mode in ("CMYK", "I") else "PNG"
    path = write_image(tmp_path / f"x.{fmt.lower()}", blob_image(), mode=mode, fmt=fmt)
    out = decode(path.read_bytes(), Preprocessing(32))
    assert out.shape == (32, 32) and out.dtype == np.uint8
    assert out[:, :12].mean() < out[:, 20:].mean()  # dark left, bright right survived the conversion


def test_16_bit_png_uses_its_full_range(tmp_path):
    array = (blob_image().astype(np.uint16) * 16)  # 12-bit data in a 16-bit file
    path = tmp_path / "x16.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = decode(path.read_bytes(), Preprocessing(32))
    assert out.min() == 0 and out.max() == 255


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(blob_image())  # bright on the right
    exif = img.getexif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    path = tmp_path / "rot.jpeg"
    img.save(path, exif=exif)
    out = decode(path.read_bytes(), Preprocessing(32))
    assert out[:, :12].mean() > out[:, 20:].mean()  # now bright on the left


def test_large_jpeg_is_decoded_at_reduced_scale_and_matches(tmp_path):
    big = np.kron(blob_image(), np.ones((40, 40), np.uint8))  # 3200 x 2400
    path = write_image(tmp_path / "big.jpeg", big, quality=90)
    small = write_image(tmp_path / "small.png", blob_image())
    a, b = (decode(f.read_bytes(), Preprocessing(64)).astype(int) for f in (path, small))
    assert np.abs(a - b).mean() < 6


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, not an image"), "not an image"),
        (lambda p: p.write_bytes(write_image(p, blob_image()).read_bytes()[:300]), "truncated"),
    ],
)
def test_broken_files_give_a_clear_reason(tmp_path, make, message):
    path = tmp_path / "bad.jpeg"
    make(path)
    with pytest.raises(ImageError, match=message):
        decode(path.read_bytes(), Preprocessing(32))


def test_decompression_bomb_is_refused(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # tiny file, huge image
    with pytest.raises(ImageError, match="pixel limit|decompression bomb"):
        decode(buffer.getvalue(), Preprocessing(32))


def test_cache_decodes_once_and_skips_bad_files(tmp_path, monkeypatch):
    good = [write_image(tmp_path / f"g{i}.png", blob_image(60 + i, 50)) for i in range(3)]
    bad = tmp_path / "bad.png"
    bad.write_text("garbage")
    first = load_images([good[0], bad, good[1], good[2]], Preprocessing(32), cache_dir=tmp_path / "cache")
    assert first.images.shape == (3, 32, 32)
    assert first.paths == [good[0], good[1], good[2]]
    assert first.skipped[0][0] == bad and "not an image" in first.skipped[0][1]

    def no_decoding(*_):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr("cxr.data.cache.decode", no_decoding)
    second = load_images(good, Preprocessing(32), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(second.images, first.images)


def _count_decodes(monkeypatch) -> list:
    from cxr.data import cache

    decoded, real = [], cache.decode
    monkeypatch.setattr("cxr.data.cache.decode", lambda data, prep: decoded.append(data) or real(data, prep))
    return decoded


def test_cache_key_follows_content_not_name(tmp_path, monkeypatch):
    a = write_image(tmp_path / "a.png", blob_image())
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    loaded = load_images([a], Preprocessing(32), cache_dir=tmp_path / "cache")
    decoded = _count_decodes(monkeypatch)
    again = load_images([b], Preprocessing(32), cache_dir=tmp_path / "cache")
    assert again.keys[b] == loaded.keys[a] and decoded == []  # another name, the same content: not decoded
    np.testing.assert_array_equal(again.images, loaded.images)


def test_a_load_of_other_files_decodes_only_the_new_ones(tmp_path, monkeypatch):
    good = [write_image(tmp_path / f"g{i}.png", blob_image(60 + i, 50)) for i in range(4)]
    first = load_images(good[:3], Preprocessing(32), cache_dir=tmp_path / "cache")
    wait_for_writes()
    assert len(list((tmp_path / "cache").rglob("*.cxa"))) == 2  # the whole set as one array, and its keys
    decoded = _count_decodes(monkeypatch)
    second = load_images(good[::-1], Preprocessing(32), cache_dir=tmp_path / "cache")
    assert decoded == [good[3].read_bytes()]
    np.testing.assert_array_equal(second.images[1:], first.images[::-1])
    assert second.paths == good[::-1] and set(second.keys) == set(good)
    assert not second.images.flags.writeable  # shared with the cache writer: a caller changes a copy


def test_a_large_set_decodes_in_worker_processes_like_a_small_one(tmp_path, monkeypatch):
    files = [write_image(tmp_path / f"g{i}.png", blob_image(40 + i, 50)) for i in range(60)]  # 60 distinct
    bad = tmp_path / "bad.png"
    bad.write_text("garbage")
    files.insert(7, bad)
    in_threads = load_images(files, Preprocessing(32), cache_dir=tmp_path / "threads")
    monkeypatch.setattr("cxr.data.cache.PROCESS_POOL_MIN_FILES", 10)
    in_processes = load_images(files, Preprocessing(32), cache_dir=tmp_path / "processes")
    np.testing.assert_array_equal(in_processes.images, in_threads.images)
    assert in_processes.paths == in_threads.paths and in_processes.keys == in_threads.keys
    assert in_processes.skipped == in_threads.skipped and in_processes.skipped[0][0] == bad
    wait_for_writes()
    assert len(list((tmp_path / "processes").rglob("*.cxa"))) == 2  # one set of 60 images and its keys


def test_colour_jpegs_decode_to_the_same_grey_as_a_conversion(tmp_path):
    rgb = np.repeat(blob_image(300, 260)[..., None], 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    converted = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    assert np.abs(read_grayscale(buffer.getvalue(), 300).astype(int) - converted).max() <= 1


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_the_fast_jpeg_path_gives_exactly_the_general_paths_pixels():
    gray = Image.fromarray(np.clip(np.random.default_rng(0).normal(120, 50, (300, 260)), 0, 255).astype(np.uint8))
    files = [_jpeg(gray), _jpeg(gray.convert("RGB")), _jpeg(gray.convert("RGB"), progressive=True),
             _jpeg(gray, quality=40)]
    if CHEST_XRAY.is_dir():
        files += [f.read_bytes() for cls in ("NORMAL", "PNEUMONIA")
                  for f in sorted((CHEST_XRAY / "train" / cls).iterdir())[:25]]
        files += [f.read_bytes() for f in sorted(FULLRES.glob("*/*"))]
    used = 0
    for data in files:
        for size in (48, 128):
            fast = _fast_jpeg(data, size)
            if fast is not None:
                used += 1
                np.testing.assert_array_equal(fast, np.asarray(_grayscale(_open_pil(data, size)), dtype=np.uint8))
    assert used >= 8


def test_jpegs_the_fast_path_cannot_match_take_the_general_path():
    gray = Image.fromarray(np.clip(np.random.default_rng(1).normal(120, 50, (200, 200)), 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation
    plain = _jpeg(gray)
    assert _fast_jpeg(plain, 64) is not None
    assert _fast_jpeg(_jpeg(gray, exif=exif), 64) is None
    assert _fast_jpeg(_jpeg(gray.convert("CMYK")), 64) is None  # four components
    assert len(plain) > 3000 and _fast_jpeg(plain[:-300], 64) is None  # truncated: the general path names the problem
    assert _fast_jpeg(plain, 32) is None  # large enough to be decoded at a reduced scale
