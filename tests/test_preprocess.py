"""The preprocessing contract: deterministic, each mode does what it says, and it is what every path uses."""

import numpy as np
import pytest

from cxr.data.preprocess import Preprocessing, crop_dark_borders


def synthetic_chest(h=60, w=90):
    """Smooth like a radiograph: two dark lung fields on a brighter body, and mild texture."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    body = 170 - 60 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03) - 60 * np.exp(
        -((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03)
    texture = np.random.default_rng(0).normal(0, 6, (h, w))
    return np.clip(body + texture, 1, 255).astype(np.uint8)


ANATOMY = synthetic_chest()


def with_black_borders(image, top=10, side=15):
    out = np.zeros((image.shape[0] + 2 * top, image.shape[1] + 2 * side), np.uint8)
    out[top:-top, side:-side] = image
    return out


def test_same_input_same_output_and_stable_keys():
    prep = Preprocessing(32, "crop", "clahe", "crop")
    a, b = prep.apply(ANATOMY.copy()), prep.apply(ANATOMY.copy())
    assert a.shape == (32, 32) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert prep.key == "32px-crop-clahe-crop-v1"
    assert Preprocessing(**prep.to_dict()) == prep


def test_every_setting_changes_the_cache_key():
    base = Preprocessing(64)
    variants = [Preprocessing(32), Preprocessing(64, "pad"), Preprocessing(64, intensity="equalize"),
                Preprocessing(64, border="crop")]
    assert len({base.key, *(v.key for v in variants)}) == 1 + len(variants)


def test_a_run_without_stored_preprocessing_is_plain_squashing_at_its_size():
    from pathlib import Path

    from cxr.runs.info import RunInfo

    old = RunInfo.from_dict({"model": "cnn", "size": 96}, Path("model.json"))
    assert old.preprocessing == Preprocessing(96, "squash", "none", "none")


@pytest.mark.parametrize("field,value", [("resize", "stretch"), ("intensity", "gamma"), ("border", "pad")])
def test_unknown_modes_are_refused_with_the_choices(field, value):
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        Preprocessing(64, **{field: value})


def test_border_crop_removes_black_collimation_borders_only():
    framed = with_black_borders(ANATOMY)
    np.testing.assert_array_equal(crop_dark_borders(framed), ANATOMY)
    np.testing.assert_array_equal(crop_dark_borders(ANATOMY), ANATOMY)  # nothing to cut
    dark = np.full((50, 50), 3, np.uint8)  # a uniformly dark image is not a border
    assert crop_dark_borders(dark).shape == dark.shape


def test_border_crop_makes_a_framed_and_an_unframed_image_alike():
    prep = Preprocessing(32, border="crop")
    framed, plain = prep.apply(with_black_borders(ANATOMY)), prep.apply(ANATOMY)
    assert np.abs(framed.astype(int) - plain.astype(int)).mean() < 2
    assert np.abs(Preprocessing(32).apply(with_black_borders(ANATOMY)).astype(int) - plain.astype(int)).mean() > 20


def test_resize_modes_keep_or_drop_the_aspect_ratio():
    wide = np.zeros((40, 80), np.uint8)
    wide[:, 20:60] = 200  # a centred square of anatomy on a wide film
    squash, crop, pad = (Preprocessing(20, mode).apply(wide) for mode in ("squash", "crop", "pad"))
    assert squash[:, 6:14].min() == 200 and squash[:, :4].max() == 0  # the square becomes a narrow band
    assert crop.min() > 190  # the centre square is all anatomy
    assert pad[:4].max() == 0 and pad[-4:].max() == 0 and pad[8:12, 6:14].mean() > 190  # letterboxed


def test_equalization_undoes_gamma_and_contrast_and_clahe_reduces_them():
    """Histogram equalization is invariant to any monotone change of grey levels (up to rounding); CLAHE,
    being contrast-limited, only partly."""
    gamma = (255 * (ANATOMY / 255.0) ** 1.6).astype(np.uint8)
    low_contrast = (128 + 0.6 * (ANATOMY.astype(float) - 128)).astype(np.uint8)

    def change(prep, changed):
        return np.abs(prep.apply(changed).astype(int) - prep.apply(ANATOMY).astype(int)).mean()

    for changed in (gamma, low_contrast):
        untouched = change(Preprocessing(48), changed)
        assert untouched > 10
        assert change(Preprocessing(48, intensity="equalize"), changed) < 7
        assert change(Preprocessing(48, intensity="clahe"), changed) < 0.8 * untouched


@pytest.mark.parametrize("border", ["none", "crop", "frame"])
def test_exact_equalization_gives_every_image_the_same_histogram_and_keeps_the_order(border):
    prep = Preprocessing(40, intensity="exact", border=border)
    k = 4 if border == "frame" else 0
    outs = [prep.apply(im)[k: 40 - k, k: 40 - k] for im in (ANATOMY, synthetic_chest(80, 70), ANATOMY // 3)]
    for out in outs:
        assert np.bincount(out.ravel(), minlength=256).std() < 1.0  # flat: each level equally often
    plain = Preprocessing(40, border=border).apply(ANATOMY)[k: 40 - k, k: 40 - k].astype(float)
    assert np.corrcoef(plain.ravel(), outs[0].astype(float).ravel())[0, 1] > 0.8  # the anatomy is kept


def test_the_frame_is_blank_and_the_inside_is_not():
    out = Preprocessing(50, intensity="exact", border="frame").apply(ANATOMY)
    assert out[:5].max() == 0 and out[:, -5:].max() == 0 and out[5:45, 5:45].std() > 50
