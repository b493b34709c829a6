"""Cache files detect truncation and overwrites, report them in one line, and are rebuilt."""

import logging

import numpy as np
import pytest

from conftest import write_image
from cxr.data.cache import load_images, wait_for_writes
from cxr.data.preprocess import Preprocessing
from cxr.files import is_sealed, load_array, save_array, sealed


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite_tail(path):
    data = bytearray(path.read_bytes())
    data[-10:] = bytes(10)  # same length, header intact: np.load alone would accept it
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _overwrite_tail])
def test_a_damaged_array_is_reported_and_removed(tmp_path, caplog, damage):
    path = tmp_path / "a.cxa"
    save_array(path, np.arange(100, dtype=np.uint8).reshape(10, 10) + 1)
    assert load_array(path).sum() == sum(range(1, 101))
    damage(path)
    with caplog.at_level(logging.WARNING):
        assert load_array(path) is None
    assert [r.message for r in caplog.records if "damaged cache file" in r.message] and not path.exists()


def test_a_sealed_file_detects_changes(tmp_path):
    path = tmp_path / "w.h5"
    with sealed(path) as tmp:
        tmp.write_bytes(b"weights" * 100)
    assert is_sealed(path)
    _overwrite_tail(path)
    assert not is_sealed(path) and not path.exists()


def test_damaged_decode_cache_is_rebuilt_with_the_same_pixels(tmp_path, caplog):
    files = [write_image(tmp_path / f"x{i}.png", size=(40 + i, 40)) for i in range(3)]
    prep, cache = Preprocessing(32), tmp_path / "cache"
    first = load_images(files, prep, cache_dir=cache).images
    wait_for_writes()
    entries = sorted(cache.rglob("*.cxa"))
    assert len(entries) == 2  # the set of three images and its keys
    for entry in entries:
        _overwrite_tail(entry)
    with caplog.at_level(logging.WARNING):
        again = load_images(files, prep, cache_dir=cache).images
    np.testing.assert_array_equal(first, again)
    assert sum("damaged cache file" in r.message for r in caplog.records) == 2
    wait_for_writes()
    assert all(load_array(e) is not None for e in entries)  # rebuilt intact
