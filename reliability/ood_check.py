"""How well the out-of-distribution guard separates the shared X-rays from images that are not X-rays.

The guard depends on the preprocessing and the training split only, so it is fitted here exactly as
`cxr train` fits it, for the seed models' preprocessing and for the robust one, on the demo's split.
"""

import io

import numpy as np
from common import CHEST_XRAY, FULLRES
from PIL import Image, ImageDraw

SKIMAGE_SAMPLES = ("astronaut", "brick", "camera", "cat", "checkerboard", "clock", "coffee", "coins", "colorwheel",
                   "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page",
                   "rocket", "text", "binary_blobs", "shepp_logan_phantom", "retina", "cell", "chelsea",
                   "microaneurysms")


def _as_file(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def non_xrays() -> dict[str, bytes]:
    """Bundled sample photos (scikit-image, scikit-learn), noise, blank images and rendered text, as PNG files."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    from cxr.data.pixels import to_uint8

    files = {}
    for name in SKIMAGE_SAMPLES:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a sample that needs a download is simply not used
            continue
        image = image.astype(np.uint8) * 255 if image.dtype == bool else image
        files[f"skimage_{name}"] = _as_file(image if image.dtype == np.uint8 else to_uint8(image))
    for i, image in enumerate(load_sample_images().images):
        files[f"sklearn_sample_{i}"] = _as_file(image)
    rng = np.random.default_rng(0)
    for i in range(10):
        files[f"noise_uniform_{i}"] = _as_file(rng.integers(0, 256, (400, 300), dtype=np.uint8))
        files[f"noise_16bit_{i}"] = _as_file(rng.integers(0, 65535, (300, 300)).astype(np.uint16))
        smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).resize((300, 300),
                                                                                                    Image.BICUBIC))
        files[f"noise_smooth_{i}"] = _as_file(smooth)
        files[f"blank_{i}"] = _as_file(np.full((300, 300), 25 * i, np.uint8))
        page = Image.new("L", (400, 300), 255 if i % 2 else 0)
        draw = ImageDraw.Draw(page)
        for line in range(8):
            draw.text((10, 10 + 35 * line), f"Report {i}.{line}: findings within normal limits", fill=128 * (i % 2),
                      font_size=18 + i)
        files[f"text_{i}"] = _as_file(np.asarray(page))
    return files


def check() -> dict:
    from cxr.data.cache import load_images
    from cxr.data.dataset import prepare
    from cxr.data.images import decode
    from cxr.data.pixels import ImageError
    from cxr.data.preprocess import ROBUST, Preprocessing
    from cxr.inference.ood import Guard
    from cxr.runs.settings import TrainConfig

    others = non_xrays()
    fullres = sorted(FULLRES.rglob("*.jpeg"))
    result = {"non_xray_images": len(others)}
    for label, prep in (("seed_models_128px", Preprocessing(128)), ("robust_64px", ROBUST.at_size(64))):
        data = prepare(CHEST_XRAY, "official", 42, prep, TrainConfig.fractions)
        parts = {side: part.images for side, part in data.parts.items()}
        parts["fullres_sample"] = load_images(fullres, prep).images[..., None]
        guard = Guard.fit(parts["train"], parts["val"])
        flagged = {side: int(guard.flags(guard.score(images)).sum()) for side, images in parts.items()}
        total = sum(len(images) for images in parts.values())
        decoded, undecodable = [], []
        for name, data_bytes in others.items():
            try:
                decoded.append(decode(data_bytes, prep))
            except ImageError:
                undecodable.append(name)  # refused before the model: as good as flagged
        scores = guard.score(np.stack(decoded))
        missed = [name for name, flag in zip([n for n in others if n not in undecodable], guard.flags(scores))
                  if not flag]
        result[label] = {
            "xray_images": total, "xray_flagged": sum(flagged.values()),
            "xray_flagged_rate": round(sum(flagged.values()) / total, 4),
            "xray_flagged_by_part": {side: f"{flagged[side]}/{len(images)}" for side, images in parts.items()},
            "non_xray_flagged_rate": round(1 - len(missed) / len(others), 4), "non_xray_missed": missed,
            "cutoff": round(guard.cutoff, 4),
        }
    result["passed"] = all(result[k]["xray_flagged_rate"] <= 0.01 and result[k]["non_xray_flagged_rate"] >= 0.95
                           for k in ("seed_models_128px", "robust_64px"))
    return result
