"""The lung fields of a chest X-ray and their bounding box, found by classical image processing.

No lung masks exist for this data, so nothing here is learned: at 128 x 128, after a light blur, the body
is what is brighter than a fraction of the image's Otsu threshold (air outside the patient is near black),
and the lung fields are the darker class of a second Otsu threshold taken over the body alone, opened to
cut thin bridges, of which the two largest connected regions whose centre lies in the chest's height are
kept (a region wider than half the image is a lung merged with the soft tissue of an arm: dropped).
The box of those regions says how tightly an X-ray is framed: how large the lungs appear, and where.
`cxr audit` uses it for the framing probe and draws it on a grid of X-rays so a person can judge it.
"""

from typing import NamedTuple

import numpy as np

AT_PX = 128  # the lung fields are found at this size
BODY_SHARE = 0.35  # body: brighter than this share of the whole image's Otsu threshold
MIN_AREA = 0.01  # a lung region covers at least this share of the image,
CENTRE_ROWS = (0.15, 0.80)  # its centre lies between these shares of the height (not neck, not belly),
MAX_WIDTH = 0.55  # and it is at most this share of the width (wider: a lung merged with the arm's soft tissue)
THORAX_MARGIN = 0.05  # crop_to_thorax keeps this share of the box's size beyond each side of it
OPENING_PX = 5  # the opening's disc: cuts the thin bridges between a lung and the soft tissue beside the ribs


class Box(NamedTuple):
    """Shares of the image's height and width; `found` is False where the whole image stands in."""

    top: float
    left: float
    height: float
    width: float
    found: bool = True


WHOLE = Box(0.0, 0.0, 1.0, 1.0, found=False)


def lung_fields(gray: np.ndarray) -> np.ndarray:
    """Boolean (AT_PX, AT_PX) mask of the lung fields of a 2-D uint8 X-ray of any size (may be empty)."""
    import cv2

    image = cv2.GaussianBlur(cv2.resize(gray, (AT_PX, AT_PX), interpolation=cv2.INTER_AREA), (5, 5), 0)
    whole_cut, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    body = image > BODY_SHARE * whole_cut
    if body.sum() < MIN_AREA * image.size:
        return np.zeros(image.shape, bool)
    lung_cut, _ = cv2.threshold(image[body].reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (OPENING_PX, OPENING_PX))
    dark = cv2.morphologyEx(((image <= lung_cut) & body).astype(np.uint8), cv2.MORPH_OPEN, disc)
    count, regions, stats, centres = cv2.connectedComponentsWithStats(dark, connectivity=4)
    low, high = (share * AT_PX for share in CENTRE_ROWS)
    candidates = [(stats[i, cv2.CC_STAT_AREA], i) for i in range(1, count)
                  if stats[i, cv2.CC_STAT_AREA] >= MIN_AREA * image.size and low < centres[i][1] < high
                  and stats[i, cv2.CC_STAT_WIDTH] <= MAX_WIDTH * AT_PX]
    return np.isin(regions, [i for _, i in sorted(candidates)[-2:]])


def thorax_box(gray: np.ndarray) -> Box:
    """The box of the lung fields; the whole image (found=False) where none are found."""
    return box_of(lung_fields(gray))


def box_of(fields: np.ndarray) -> Box:
    """The box of a lung-field mask from lung_fields; the whole image (found=False) where it is empty."""
    rows, cols = np.nonzero(fields)
    if rows.size == 0:
        return WHOLE
    return Box(rows.min() / AT_PX, cols.min() / AT_PX, (rows.max() + 1 - rows.min()) / AT_PX,
               (cols.max() + 1 - cols.min()) / AT_PX)


def crop_to_thorax(gray: np.ndarray, margin: float = THORAX_MARGIN) -> np.ndarray:
    """The X-ray cut to the box of its lung fields widened by `margin` of the box on every side (within the
    image); the whole X-ray where no lung fields are found, or where the box stays on one side of the middle
    (one lung, or the soft tissue of a shoulder taken for one: cutting to it would keep half a chest)."""
    box = thorax_box(gray)
    if not box.found or not box.left < 0.5 < box.left + box.width:
        return gray
    h, w = gray.shape
    top, bottom = box.top - margin * box.height, box.top + (1 + margin) * box.height
    left, right = box.left - margin * box.width, box.left + (1 + margin) * box.width
    rows = slice(max(0, int(top * h)), min(h, int(np.ceil(bottom * h))))
    cols = slice(max(0, int(left * w)), min(w, int(np.ceil(right * w))))
    return gray[rows, cols]


FRAMING_FEATURES = ("top", "left", "height", "width", "centre_row", "centre_column", "aspect")


def framing_features(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 7) framing features of (n, size, size[, 1]) uint8 images, and (n,) whether lungs were found
    (where not, the features are the whole image's)."""
    rows, found = [], []
    for image in np.asarray(images).reshape(len(images), images.shape[1], images.shape[2]):
        box = thorax_box(image)
        found.append(box.found)
        rows.append([box.top, box.left, box.height, box.width, box.top + box.height / 2,
                     box.left + box.width / 2, box.height / box.width])
    return np.array(rows, np.float32), np.array(found, bool)
