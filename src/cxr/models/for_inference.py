"""A trained model in the form inference runs: training-only layers out, logits out where they can be."""

import keras
import numpy as np

from cxr.models.layers import TRAINING_ONLY_LAYERS, FoldedAway

CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)

OUTPUT_LAYER = "pneumonia"  # every builder names its sigmoid output layer so


def inference_model(model, size: int, logits: bool):
    """The same model, same weights, in the layers inference needs: what the ONNX export writes and what the
    Keras engine runs.

    Traced as they are, augmentation and dropout layers (inside an ensemble's members) export their random
    ops, which ONNX Runtime cannot run, and Normalization exports its mean and variance as extra graph
    inputs; at inference the first are the identity and the second is a per-channel scale and offset, so
    they are swapped for exactly that.
    A batch normalisation right after a float32 convolution (MobileNetV2's every one, half of DenseNet121's) is
    folded into the convolution's kernel and bias: at inference it is a per-channel scale and offset, which
    TensorFlow runs as passes of their own over the feature map (MobileNetV2 at 128 px: 3.3 ms an X-ray
    unfolded, 1.9 ms folded, on 2 cores; logits move by 4e-6).
    With `logits`, the output layer leaves out its sigmoid, and the engine applies sigmoid and temperature
    in float64: a float32 probability saturates in the tails (0.99999994 is the last step before 1),
    ONNX Runtime's fast sigmoid is off by ~1e-8 there, and the temperature magnifies either (up to 1e-2
    in a calibrated probability).
    """

    folded = _foldable(model)  # id(convolution) -> its batch normalisation
    normalisations = {id(bn) for bn in folded.values()}

    def for_inference(layer):
        if id(layer) in normalisations:
            return FoldedAway(name=layer.name)
        if id(layer) in folded:
            return layer.__class__.from_config({**layer.get_config(), "use_bias": True})
        if isinstance(layer, TRAINING_ONLY_LAYERS):
            return keras.layers.Identity(name=layer.name)
        if isinstance(layer, keras.layers.Normalization):
            config = layer.get_config()
            sd = np.sqrt(np.asarray(config["variance"], np.float64))
            return keras.layers.Rescaling((1 / sd).tolist(), (-np.asarray(config["mean"]) / sd).tolist(),
                                          name=layer.name)
        config = layer.get_config()
        if logits and layer.name == OUTPUT_LAYER:
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    inference = keras.models.clone_model(model, clone_function=for_inference, recursive=True)
    for layer, twin in _twins(model, inference):
        if id(layer) in folded:
            twin.set_weights(_folded_weights(layer, folded[id(layer)]))
        elif twin.weights:
            twin.set_weights(layer.get_weights())
    # Export needs a called model. A plain call, not predict(): every predict() traces a function of its own, and
    # a process that loads several runs (stress, compare, an ensemble's members) drew TensorFlow's warning about
    # retracing.
    inference(np.zeros((1, size, size, 1), np.float32), training=False)
    return inference


def _foldable(model) -> dict:
    """{id(convolution): batch normalisation} of each batch normalisation over the channels whose input is a
    convolution's output that nothing else reads, in `model` or a model nested in it."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_foldable(layer))
        elif isinstance(layer, keras.layers.BatchNormalization) and len(layer._inbound_nodes) == 1:
            source = layer.input._keras_history.operation
            over_channels = layer.axis in (-1, len(layer.input.shape) - 1)
            # In bfloat16 the folded kernel rounds otherwise (DenseNet121: logits moved up to 0.03), for no gain.
            exact = source.compute_dtype == "float32"
            if over_channels and exact and isinstance(source, CONVOLUTIONS) and len(source._outbound_nodes) == 1:
                found[id(source)] = layer
    return found


def _twins(model, clone):
    """(layer, its clone) for every layer, nested models' layers included."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):  # no weights; a clone may name it otherwise
            continue
        twin = clone.get_layer(layer.name)
        if isinstance(layer, keras.Model):
            yield from _twins(layer, twin)
        else:
            yield layer, twin


def _folded_weights(conv, bn) -> list:
    """[kernel, bias] of `conv` followed by `bn` (inference: a scale and an offset per output channel)."""
    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
    mean, variance = (np.asarray(v, np.float64) for v in (bn.moving_mean, bn.moving_variance))
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(variance + bn.epsilon)
    # Output channels: a Conv2D kernel's last axis; a depthwise kernel's last two (input channel, multiplier).
    kernel = kernel * scale.reshape(kernel.shape[-2:] if isinstance(conv, keras.layers.DepthwiseConv2D) else -1)
    return [kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)]


# The forms made of the last few models (a copy in another precision, the inference model, its compiled graph,
# the feature extractor): training calibrates, guards and evaluates the model it saved, `cxr evaluate`, `predict` and
# `export` in one script use the same loaded model, and each would otherwise rebuild and retrace them (seconds
# each for DenseNet121). A model's weights must not change once forms of it are made (load_run: for inference).
_FORMS: dict = {}  # id(model) -> (model, {form: ...}); the model is held, so its id is not reused meanwhile


def forms_of(model) -> dict:
    """The forms made of `model` so far, by name; the caller adds what it makes."""
    if _FORMS.get(id(model), (None,))[0] is not model:
        if len(_FORMS) >= 8:
            del _FORMS[next(iter(_FORMS))]
        _FORMS[id(model)] = (model, {})
    return _FORMS[id(model)][1]


def shared_inference_model(model, size: int, logits: bool):
    """inference_model(model, size, logits), made once per model."""
    forms = forms_of(model)
    if ("inference", logits) not in forms:
        forms[("inference", logits)] = inference_model(model, size, logits)
    return forms[("inference", logits)]
