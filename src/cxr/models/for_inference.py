"""A trained model in the form inference runs: training-only layers out, logits out where they can be."""

import keras
import numpy as np

from cxr.models.layers import TRAINING_ONLY_LAYERS

OUTPUT_LAYER = "pneumonia"  # every builder names its sigmoid output layer so


def inference_model(model, size: int, logits: bool):
    """The same model, same weights, in the layers inference needs: what the ONNX export writes and what the
    Keras engine runs.

    Traced as they are, augmentation and dropout layers (inside an ensemble's members) export their random
    ops, which ONNX Runtime cannot run, and Normalization exports its mean and variance as extra graph
    inputs; at inference the first are the identity and the second is a per-channel scale and offset, so
    they are swapped for exactly that.
    With `logits`, the output layer leaves out its sigmoid, and the engine applies sigmoid and temperature
    in float64: a float32 probability saturates in the tails (0.99999994 is the last step before 1),
    ONNX Runtime's fast sigmoid is off by ~1e-8 there, and the temperature magnifies either (up to 1e-2
    in a calibrated probability).
    """

    def for_inference(layer):
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
    inference.set_weights(model.get_weights())
    # Export needs a called model. A plain call, not predict(): every predict() traces a function of its own, and
    # a process that loads several runs (stress, compare, an ensemble's members) drew TensorFlow's warning about
    # retracing.
    inference(np.zeros((1, size, size, 1), np.float32), training=False)
    return inference


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
