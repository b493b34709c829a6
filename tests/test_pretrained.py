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
