"""The out-of-distribution guard flags what does not look like the training X-rays, and little that does."""

import csv

import numpy as np
from PIL import Image

from conftest import FULLRES, run_cxr
from cxr.inference.ood import Guard


def _chest_like(rng, n, size=48):
    """Two dark 'lungs' in a bright field, varying in place, size and brightness, with mild noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        image = 170 + 20 * rng.standard_normal() + 0 * xx
        for cx in (0.32, 0.68):
            cx += 0.03 * rng.standard_normal()
            lung = ((xx - cx) / 0.15) ** 2 + ((yy - 0.5) / (0.3 + 0.03 * rng.standard_normal())) ** 2 < 1
            image = np.where(lung, image - 90, image)
        images.append(np.clip(image + 5 * rng.standard_normal((size, size)), 0, 255).astype(np.uint8))
    return np.stack(images)


def test_guard_flags_noise_blank_and_stripes_but_few_in_distribution(tmp_path):
    rng = np.random.default_rng(0)
    guard = Guard.fit(_chest_like(rng, 400), _chest_like(rng, 200))
    fresh = guard.flags(guard.score(_chest_like(rng, 200)))
    assert fresh.mean() <= 0.03
    strangers = np.stack([rng.integers(0, 256, (48, 48)), np.full((48, 48), 128), np.zeros((48, 48)),
                          np.tile(np.arange(48) * 5, (48, 1)), 255 - _chest_like(rng, 1)[0]]).astype(np.uint8)
    assert guard.flags(guard.score(strangers)).all()
    guard.save(tmp_path / "ood.npz")
    np.testing.assert_allclose(Guard.load(tmp_path / "ood.npz").score(strangers), guard.score(strangers), rtol=1e-6)


def test_every_prediction_carries_the_check_and_noise_is_flagged(trained_run, tmp_path):
    noise = tmp_path / "noise16.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 65535, (300, 300)).astype(np.uint16)).save(noise)
    result = run_cxr("predict", trained_run, FULLRES, noise)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["path"]: row for row in csv.DictReader(result.stdout.splitlines())}
    assert rows[str(noise)]["ood"] == "True"
    xrays = [row for path, row in rows.items() if path != str(noise)]
    assert len(xrays) == 40 and sum(row["ood"] == "True" for row in xrays) <= 4  # guard fitted on ~80 images


def test_a_frozen_base_gives_its_guard_features_from_the_one_pass_its_head_trains_on(tmp_path, monkeypatch):
    """`train vgg16` fits its feature guard on the outputs the base gave for the head (no second pass over the
    training split): they must be the features the run computes for every X-ray it checks later."""
    from types import SimpleNamespace

    # A cache of its own: the base's weights are random here, so another process's cached features (same images,
    # same key) are another network's.
    monkeypatch.setenv("CXR_CACHE", str(tmp_path))

    from cxr.inference.features import FeatureExtractor
    from cxr.models import build
    from cxr.training.frozen_features import cached_features
    from cxr.training.guards import frozen_base_blocks

    built = build("vgg16", 32, pretrained=False)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 1), dtype=np.uint8)
    cfg = SimpleNamespace(model="vgg16", size=32)
    fresh = cached_features(built, images, cfg)
    cached = cached_features(built, images, cfg)  # the second time from the cache
    np.testing.assert_array_equal(fresh.features, cached.features)
    np.testing.assert_array_equal(fresh.held_means, cached.held_means)
    expected = FeatureExtractor([(built.model, 32)], 32)(images)
    got = frozen_base_blocks(built.model, cached)
    for block in ("penultimate", "intermediate"):
        assert got[block].shape == expected[block].shape
        np.testing.assert_allclose(got[block], expected[block], rtol=2e-3, atol=2e-3 * np.abs(expected[block]).max())
    assert np.abs(expected["intermediate"]).max() > 0  # a layer that computes something, not a blank
