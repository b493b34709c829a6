"""An ensemble as one Keras model: the mean of its members' logits, each member on the input it sees
(cxr.training.ensemble makes and saves one). The Predictor, the features and the evidence maps run the members
one by one, on the same views."""

import keras
import numpy as np
from keras import layers

from cxr.models.for_inference import OUTPUT_LAYER, inference_model

TTA_ZOOM = 1.1  # the extra views: zoomed in 10%, and widened 10%, each cropped back to the centre
# The ensemble's own layers compute in float32 whatever the global policy: each member casts its input to its
# own policy, and a member in float32 must not see a bfloat16 view.
EXACT = "float32"


def tta_views(image, size: int) -> list:
    """The image as it is, plus deterministic views a different framing would give (built-in layers only)."""
    zoom = round(size * TTA_ZOOM)
    zoomed = layers.CenterCrop(size, size, dtype=EXACT)(layers.Resizing(zoom, zoom, dtype=EXACT)(image))
    widened = layers.CenterCrop(size, size, dtype=EXACT)(layers.Resizing(size, zoom, dtype=EXACT)(image))
    return [image, zoomed, widened]


def member_view(images: np.ndarray, member_size: int) -> np.ndarray:
    """What a member at 1/k of the ensemble's size sees of (n, size, size[, 1]) images: each averaged over k x k
    blocks, as the saved model's AveragePooling2D does, in (n, size / k, size / k, 1); the very array where the
    sizes match (so that outputs known for it are found)."""
    factor = images.shape[1] // member_size
    if factor == 1:
        return images
    return np.asarray(images, np.float32).reshape(-1, member_size, factor, member_size, factor, 1).mean(axis=(2, 4))


def build_ensemble(members: list[keras.Model], sizes: list[int], size: int, tta: bool) -> keras.Model:
    """`members[i]` takes (sizes[i], sizes[i], 1) images; each divides `size`, the ensemble's input."""
    members = [inference_model(m, s, logits=True) for m, s in zip(members, sizes)]  # same weights, logits out
    for i, member in enumerate(members):
        member.name = f"member{i}_{member.name}"  # names must be unique inside one model
    image = keras.Input((size, size, 1), name="image")
    views = tta_views(image, size) if tta else [image]
    outputs = []
    for i, (member, member_size) in enumerate(zip(members, sizes)):
        factor = size // member_size
        for j, view in enumerate(views):
            if factor > 1:
                view = layers.AveragePooling2D(factor, name=f"member{i}_view{j}_at_{member_size}px", dtype=EXACT)(view)
            outputs.append(member(view))
    mean = layers.Average(name="mean_logit", dtype=EXACT)(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(image, layers.Activation("sigmoid", name=OUTPUT_LAYER, dtype=EXACT)(mean), name="ensemble")
