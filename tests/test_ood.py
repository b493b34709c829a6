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
