import keras
import numpy as np
import pytest

from cxr.errors import UsageError
from cxr.models import build, model_flops, names
from cxr.models.augment import RandomAffine
from cxr.runs.folder import RunError, load_keras_model


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


@pytest.mark.parametrize("name", names())
def test_every_model_maps_grayscale_pixels_to_a_probability(name):
    built = build(name, 80, pretrained=False)
    x = np.random.default_rng(0).uniform(0, 255, (3, 80, 80, 1)).astype("float32")
    p = built.model.predict(x, verbose=0)
    assert p.shape == (3, 1) and np.all((p >= 0) & (p <= 1))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in all_layers(built.model))


def test_registry_lists_the_seed_models():
    assert {"cnn", "cnn_aug", "vgg16", "vgg19", "xception", "densenet121", "mobilenetv2"} <= set(names())
    assert {"vgg16_e2e", "densenet121_e2e", "mobilenetv2_e2e"} <= set(names())


@pytest.mark.parametrize("name", [n for n in names() if n != "vgg19"])  # vgg19: no weights offline
def test_the_kinds_never_served_are_exactly_those_without_pretrained_weights(name):
    """`cxr compare` serves only runs built from pretrained networks, reading selection.FROM_SCRATCH: every other
    kind must load ImageNet weights."""
    from cxr.evaluation.selection import FROM_SCRATCH
    from cxr.models.pretrained import WeightsUnavailable

    try:
        note = build(name, 80).weights_note
    except WeightsUnavailable as exc:
        pytest.skip(str(exc))
    assert ("ImageNet" in note) == (name not in FROM_SCRATCH), (name, note)


@pytest.mark.parametrize("name", ["densenet121_e2e", "mobilenetv2_e2e"])
def test_fine_tuned_networks_keep_batch_normalisation_statistics(name):
    """Every convolution trains, but batch normalisation runs in inference mode: training moves every kernel and
    leaves the ImageNet running statistics as they were."""
    from cxr.models.pretrained import WeightsUnavailable
    from cxr.training.fit import compile_model

    try:  # random weights would do for the statistics, but their saturated ReLU6 units pass no gradient back
        model = build(name, 48).model
    except WeightsUnavailable as exc:
        pytest.skip(str(exc))
    norms = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.Conv2D)]
    before = [layer.moving_mean.numpy().copy() for layer in norms]
    kernels = [layer.kernel.numpy().copy() for layer in convs]
    compile_model(model, 1e-2)
    x = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype("float32")
    model.fit(x, np.arange(8) % 2, epochs=3, verbose=0)  # the zero head passes gradients on from the 2nd step
    assert all(np.array_equal(b, layer.moving_mean.numpy()) for b, layer in zip(before, norms))
    assert all(not np.array_equal(k, layer.kernel.numpy()) for k, layer in zip(kernels, convs))


def test_seed_cnn_shape_rules():
    model = build("cnn", 128).model
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(convs) >= 3 and 1 <= len(denses) <= 4


def test_augmentation_never_mirrors_the_chest():
    model = build("cnn_aug", 64).model
    assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in model.layers)
    assert any(isinstance(layer, RandomAffine) for layer in model.layers)


def test_one_pass_affine_augmentation_moves_the_image_only_while_training(tmp_path):
    image = np.zeros((4, 64, 64, 1), "float32")
    image[:, 20:44, 28:36] = 200.0  # a vertical bar off the centre line
    layer = RandomAffine(rotation=10, shift=0.05, zoom=0.1, aspect=0.25, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(image, training=False)), image)
    moved = keras.ops.convert_to_numpy(layer(image, training=True))
    assert moved.shape == image.shape and not np.allclose(moved, image)
    assert np.all(moved >= 0) and np.all(moved <= 200.0 + 1e-3)  # resampled, never brightened
    # Each image gets its own transform, and the bright area stays about the same size.
    assert not np.allclose(moved[0], moved[1])
    assert np.all(np.abs((moved > 100).sum(axis=(1, 2, 3)) / (image[0] > 100).sum() - 1) < 0.6)
    model = keras.Sequential([keras.Input((64, 64, 1)), layer])
    model.save(tmp_path / "aug.keras")
    assert isinstance(load_keras_model(tmp_path / "aug.keras").layers[0], RandomAffine)


def test_the_fast_cnn_keeps_the_seed_layout_with_a_strided_first_convolution():
    fast, seed = build("cnn", 128).model, build("cnn_seed", 128).model
    assert [type(layer) for layer in fast.layers] == [type(layer) for layer in seed.layers]
    assert fast.get_layer("conv1").strides == (2, 2) and seed.get_layer("conv1").strides == (1, 1)
    assert model_flops(fast) < model_flops(seed) / 4


def test_transfer_base_is_frozen_and_only_the_head_trains():
    built = build("vgg16", 64, pretrained=False)
    trainable = sum(int(np.prod(w.shape)) for w in built.model.trainable_weights)
    head = sum(int(np.prod(w.shape)) for w in built.head.trainable_weights)
    assert trainable == head > 0
    x = np.full((1, 64, 64, 1), 128.0, "float32")
    np.testing.assert_allclose(built.head.predict(built.features.predict(x, verbose=0), verbose=0),
                               built.model.predict(x, verbose=0), rtol=1e-5)


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(UsageError, match="cnn_aug"):
        build("resnet9000")


def test_vgg19_offline_without_weights_file_says_what_to_do(monkeypatch):
    def offline(*_, **__):
        raise OSError("no network")

    monkeypatch.setattr(keras.applications, "VGG19", _patched_vgg19(offline))
    with pytest.raises(Exception, match="--weights PATH"):
        build("vgg19", 64)


def _patched_vgg19(offline):
    original = keras.applications.VGG19

    def vgg19(*args, weights=None, **kwargs):
        if weights == "imagenet":
            offline()
        return original(*args, weights=weights, **kwargs)

    return vgg19


def test_a_model_file_carrying_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((4,))
    tampered = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    tampered.save(tmp_path / "model.keras")
    with pytest.raises(RunError, match="Lambda"):
        load_keras_model(tmp_path / "model.keras")


def test_vgg19_loads_a_user_weights_file(tmp_path):
    """Offline, VGG19 takes its ImageNet weights from a Keras weights file the user gives (--weights)."""
    source = keras.applications.VGG19(weights=None, include_top=False, input_shape=(64, 64, 3))
    path = tmp_path / "vgg19_notop.weights.h5"
    source.save_weights(path)
    built = build("vgg19", 64, weights=str(path))
    base = next(layer for layer in built.features.layers if isinstance(layer, keras.Model))
    for a, b in zip(base.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert path.name in built.weights_note


def test_the_end_to_end_model_trains_every_layer_and_ignores_its_frame():
    import numpy as np

    built = build("vgg16_e2e", 40, pretrained=False)
    model = built.model
    assert built.features is None  # nothing frozen: every layer is fine-tuned
    assert sum(np.prod(w.shape) for w in model.trainable_weights) == model.count_params()
    head = model.get_layer("pneumonia")  # zero-initialised: give it weights so that the output can move
    head.kernel.assign(np.random.default_rng(1).normal(0, 0.05, head.kernel.shape))
    image = np.random.default_rng(0).integers(0, 255, (1, 40, 40, 1)).astype(np.float32)
    framed_differently = image.copy()
    framed_differently[:, :4] = 0
    framed_differently[:, :, -4:] = 255  # the outer 10% (4 px of 40) is blanked inside the model
    np.testing.assert_allclose(model(image, training=False), model(framed_differently, training=False), rtol=1e-6)
    inside = image.copy()
    inside[:, 15:25, 15:25] = 255
    assert not np.allclose(model(image, training=False), model(inside, training=False))


@pytest.mark.parametrize("name", ["cnn_aug", "vgg16_e2e", "mobilenetv2_e2e"])
def test_every_random_layer_draws_from_the_epoch_seed(name):
    """Exact resume rests on this: each epoch's augmentation is a function of (seed, epoch) alone, for random
    layers nested inside the model too (found through the public `layers` of nested models)."""
    from cxr.training.callbacks import EpochSeeds

    model = build(name, 48, pretrained=False).model
    seeded = EpochSeeds(seed=7)
    seeded.set_model(model)
    seeded.on_epoch_begin(3)
    random_layers = [layer for layer in _nested(model) if hasattr(layer, "seed_generator")]
    assert random_layers
    states = [tuple(np.asarray(layer.seed_generator.state)) for layer in random_layers]
    assert all(state[1] == 3 for state in states) and len(set(states)) == len(states)


def _nested(layer):
    return [layer] + [inner for child in getattr(layer, "layers", []) for inner in _nested(child)]


def test_the_inference_model_folds_batch_normalisation_into_the_convolution_before_it():
    """Each float32 convolution followed by a batch normalisation (plain and depthwise, inside a nested base, with
    and without a bias) computes both in one: same logits, no batch normalisation left where it folded. One whose
    input is read elsewhere, or that follows no convolution, stays."""
    from cxr.models.for_inference import inference_model

    rng = np.random.default_rng(0)
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    shared = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.Add()([keras.layers.BatchNormalization()(shared), shared])  # the convolution is read twice
    base = keras.Model(image, keras.layers.BatchNormalization()(x), name="base")
    grey = keras.Input((16, 16, 1))
    features = keras.layers.GlobalAveragePooling2D()(base(keras.layers.Concatenate()([grey, grey, grey])))
    model = keras.Model(grey, keras.layers.Dense(1, activation="sigmoid", name="pneumonia")(features))
    for layer in base.layers:  # statistics and affine parameters far from the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2, w.shape) if i != 1 else rng.normal(0, 1, w.shape)
                               for i, w in enumerate(layer.get_weights())])
    inference = inference_model(model, 16, logits=True)
    kept = [layer.name for layer in inference.get_layer("base").layers
            if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(kept) == 2  # after the convolution read twice, and after the Add
    x = rng.uniform(0, 255, (4, 16, 16, 1)).astype("float32")
    logits = np.log(model(x) / (1 - model(x)))
    np.testing.assert_allclose(inference(x), logits, rtol=1e-4, atol=1e-4)
