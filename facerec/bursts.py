"""Burst check of near-duplicate candidates: colours that agree once a dense flow aligns the two images.

Consecutive frames of one shoot differ by a blink, a smile or a slight turn of the head, which one
rigid transform cannot explain (facerec.keypoints), but a dense optical flow can; once aligned,
they keep the same colours nearly everywhere: skin, hair, clothes and background under one light
and one colour grading. Two different photos of a person in the same pose align about as well in
grey, but their light and colours differ. The measure is the median CIELAB colour difference (ΔE)
between one image and the other flowed onto it. Settings measured on the pins mirror
(docs/splitting.md).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image

from facerec.workers import usable_cores

# Both images are resized to this square: about the mirror's own size (faces of 50-160 px).
FLOW_SIDE_PX = 96
# DIS optical flow (coarse to fine, so a few pixels of shift or scale need no prior alignment).
FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_FAST
# Left out on each side: where content moved out of view the flow has nothing to match.
BORDER_PX = FLOW_SIDE_PX // 16

FlowView = tuple[np.ndarray, np.ndarray]  # (side, side) grey uint8, (side, side, 3) CIELAB float32


def flow_view(image: Image.Image) -> FlowView:
    """The grey and CIELAB (L 0-100) FLOW_SIDE_PX square of an RGB image, resized by pixel area."""
    side = (FLOW_SIDE_PX, FLOW_SIDE_PX)
    rgb = cv2.resize(np.asarray(image.convert("RGB")), side, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def colour_difference(first: FlowView, second: FlowView) -> float:
    """Median CIELAB ΔE between `first` and `second` flowed onto it (DIS optical flow), inside the border."""
    (grey_first, lab_first), (grey_second, lab_second) = first, second
    # A flow object per call: instances keep state and are shared by no thread.
    flow = cv2.DISOpticalFlow_create(FLOW_PRESET).calc(grey_first, grey_second, None)
    rows, cols = np.mgrid[0:FLOW_SIDE_PX, 0:FLOW_SIDE_PX].astype(np.float32)
    flowed = cv2.remap(lab_second, cols + flow[..., 0], rows + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    inner = slice(BORDER_PX, FLOW_SIDE_PX - BORDER_PX)
    return float(np.median(np.linalg.norm(lab_first[inner, inner] - flowed[inner, inner], axis=-1)))


def pair_colour_differences(pairs: np.ndarray, open_colour: Callable[[int], Image.Image],
                            workers: int | None = None) -> np.ndarray:
    """colour_difference of each (k, 2) image pair; each image involved is decoded (`open_colour(row)`) once.

    Runs on `workers` threads (None: every usable core; OpenCV and Pillow release the GIL), so
    `open_colour` must be thread-safe. Each pair's value depends on its two images alone.
    """
    if not len(pairs):
        return np.empty(0, dtype=np.float64)
    rows = np.unique(pairs).tolist()
    with ThreadPoolExecutor(workers or usable_cores()) as pool:
        views = dict(zip(rows, pool.map(lambda row: flow_view(open_colour(row)), rows)))
        differences = pool.map(lambda pair: colour_difference(views[pair[0]], views[pair[1]]), pairs.tolist())
        return np.fromiter(differences, dtype=np.float64, count=len(pairs))
