"""Photos of real faces that ship inside installed packages, and photos the tests compose from them."""

from __future__ import annotations

import numpy as np
from PIL import Image


def grace_hopper() -> np.ndarray:
    """matplotlib's sample portrait (512×600 RGB, one face)."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


def astronaut() -> np.ndarray:
    """scikit-image's astronaut (512×512 RGB, one face; bundled in the wheel, no download)."""
    from skimage import data

    return data.astronaut()


def group_photo() -> np.ndarray:
    """Three faces on one grey canvas: Grace Hopper, the astronaut, and a half-size Grace Hopper."""
    canvas = np.full((640, 1500, 3), 128, np.uint8)
    hopper, small = grace_hopper(), np.asarray(Image.fromarray(grace_hopper()).resize((256, 300)))
    canvas[20:620, 0:512] = hopper
    canvas[64:576, 560:1072] = astronaut()
    canvas[170:470, 1180:1436] = small
    return canvas


# Where each face of group_photo() is: x ranges (pixels) of its source picture on the canvas.
GROUP_FACE_COLUMNS = ((0, 512), (560, 1072), (1180, 1436))


def no_face_photo() -> np.ndarray:
    """A smooth colour gradient with a few rectangles: photo-like, without a face."""
    rows, cols = np.mgrid[0:360, 0:480]
    image = np.stack([rows * 255 // 359, cols * 255 // 479, (rows + cols) * 255 // 838], axis=-1).astype(np.uint8)
    image[40:120, 60:200] = (30, 160, 40)
    image[200:320, 300:420] = (220, 220, 210)
    return image


def variants(image: np.ndarray, count: int) -> list[np.ndarray]:
    """Distinct photos of the same face: shifted crops, mirrored, rescaled and relit."""
    height, width = image.shape[:2]
    photos = []
    for index in range(count):
        top, left = (index * 17) % 60, (index * 29) % 60
        crop = Image.fromarray(image[top:height - 60 + top, left:width - 60 + left])
        if index % 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = 200 + 40 * (index % 4)
        crop = crop.resize((side, round(side * crop.height / crop.width)))
        photos.append(np.clip(np.asarray(crop, np.float32) * (0.7 + 0.1 * (index % 5)), 0, 255).astype(np.uint8))
    return photos


def write_face_dataset(root, per_identity: int = 6):
    """<root>/pins_<Name>/<n>.jpg for two real faces, plus a photo without a face and a group photo."""
    from pathlib import Path

    root = Path(root)
    for name, face in (("Grace Hopper", grace_hopper()), ("Astronaut", astronaut())):
        (root / f"pins_{name}").mkdir(parents=True, exist_ok=True)
        for index, photo in enumerate(variants(face, per_identity)):
            Image.fromarray(photo).save(root / f"pins_{name}" / f"{index}.jpg", quality=92)
    Image.fromarray(no_face_photo()).save(root / "pins_Grace Hopper" / "no_face.jpg", quality=92)
    Image.fromarray(group_photo()).save(root / "pins_Astronaut" / "group.jpg", quality=92)
    return root
