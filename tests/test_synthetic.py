"""Code and data tests of the synthetic demo dataset."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from facerec.synthetic import IDENTITY_NAMES, generate_synthetic_dataset


def _digest(root):
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*.jpg"))}


def test_layout_matches_the_kaggle_archive(synthetic_root):
    folders = sorted(path.name for path in synthetic_root.iterdir())
    assert folders == [f"pins_{name}" for name in IDENTITY_NAMES[:4]], "one pins_<Name> folder per identity"
    for folder in synthetic_root.iterdir():
        images = list(folder.glob("*.jpg"))
        assert len(images) == 12, f"{folder.name} should hold images_per_identity JPEGs"
        with Image.open(images[0]) as image:
            assert image.format == "JPEG" and image.size == (48, 48), "JPEG of the requested size"


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    first = generate_synthetic_dataset(tmp_path / "a", identities=2, images_per_identity=3, image_size_px=32, seed=7)
    again = generate_synthetic_dataset(tmp_path / "b", identities=2, images_per_identity=3, image_size_px=32, seed=7)
    other = generate_synthetic_dataset(tmp_path / "c", identities=2, images_per_identity=3, image_size_px=32, seed=8)
    assert _digest(first) == _digest(again), "a seed must reproduce the dataset byte for byte"
    assert _digest(first) != _digest(other), "another seed must draw other images"


def test_identities_differ_more_than_photos_of_one_identity(synthetic_root):
    """Learnable: the mean image of an identity is closer to its own photos than to others'."""
    folders = sorted(synthetic_root.iterdir())
    stacks = [np.stack([np.asarray(Image.open(path), dtype=float) for path in sorted(folder.glob("*.jpg"))])
              for folder in folders]
    centres = [stack[:6].mean(axis=0) for stack in stacks]
    correct = 0
    held_out = 0
    for label, stack in enumerate(stacks):
        for photo in stack[6:]:
            distances = [np.abs(photo - centre).mean() for centre in centres]
            correct += int(np.argmin(distances) == label)
            held_out += 1
    assert correct / held_out > 1 / len(stacks), "nearest-mean should beat chance on held-out photos"
