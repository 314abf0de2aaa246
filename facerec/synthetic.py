"""Draw a seeded demo dataset of face-like identities in the Kaggle Pins archive layout."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

log = logging.getLogger(__name__)

# Fictional names; one with non-ASCII letters and all with spaces, so the whole pipeline is
# exercised on the kinds of folder names the real dataset has.
IDENTITY_NAMES = [
    "Ada Brennan", "Bruno Castell", "Chloé Dumas", "Dev Iyer", "Elif Kaya", "Finn Larsen",
    "Grace Mbeki", "Hugo Novak", "Ines Ortega", "Jonas Pihl", "Kiri Rangi", "Lena Sørensen",
]

# Small palettes on purpose: identities share skin or hair colours, so only the combination of
# colours, face shape and feature placement tells them apart.
SKIN_TONES = [(241, 204, 177), (224, 172, 135), (190, 134, 96), (141, 94, 62), (96, 64, 44)]
HAIR_COLOURS = [(30, 24, 20), (92, 58, 32), (176, 128, 66), (214, 190, 130), (140, 140, 140)]
EYE_COLOURS = [(60, 40, 20), (50, 90, 140), (70, 110, 70)]


@dataclass(frozen=True)
class FaceTraits:
    """What stays the same across all photos of one identity (fractions of the canvas)."""

    face_width: float
    face_height: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eyes: tuple[int, int, int]
    hair_style: int  # 0 short crop, 1 long sides, 2 high top, 3 side parting
    eye_spacing: float
    eye_height: float
    nose_length: float
    mouth_width: float
    has_beard: bool
    has_glasses: bool


def random_traits(rng: np.random.Generator) -> FaceTraits:
    """Draw one identity's traits."""
    return FaceTraits(
        face_width=rng.uniform(0.40, 0.56),
        face_height=rng.uniform(0.56, 0.72),
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        eyes=EYE_COLOURS[rng.integers(len(EYE_COLOURS))],
        hair_style=int(rng.integers(4)),
        eye_spacing=rng.uniform(0.14, 0.24),
        eye_height=rng.uniform(0.40, 0.48),
        nose_length=rng.uniform(0.06, 0.14),
        mouth_width=rng.uniform(0.10, 0.22),
        has_beard=bool(rng.random() < 0.3),
        has_glasses=bool(rng.random() < 0.3),
    )


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, fill) -> None:
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)


def draw_face(traits: FaceTraits, rng: np.random.Generator, size_px: int) -> Image.Image:
    """Render one photo of an identity with random pose, scale, lighting and noise."""
    canvas = size_px * 2  # draw large, then downsample: cheap anti-aliasing
    background = tuple(int(v) for v in rng.integers(40, 220, size=3))
    image = Image.new("RGB", (canvas, canvas), background)
    draw = ImageDraw.Draw(image)
    scale = canvas * rng.uniform(0.85, 1.1)
    cx = canvas / 2 + rng.normal(0, 0.04) * canvas
    cy = canvas / 2 + rng.normal(0, 0.04) * canvas
    face_rx, face_ry = traits.face_width * scale / 2, traits.face_height * scale / 2
    top = cy - face_ry

    if traits.hair_style == 1:  # long hair falls behind the face
        draw.rectangle((cx - face_rx * 1.2, top, cx + face_rx * 1.2, cy + face_ry * 0.9), fill=traits.hair)
    _ellipse(draw, cx, cy, face_rx, face_ry, traits.skin)
    hair_height = {0: 0.35, 1: 0.45, 2: 0.7, 3: 0.4}[traits.hair_style] * face_ry
    draw.chord((cx - face_rx * 1.05, top - hair_height, cx + face_rx * 1.05, top + hair_height * 1.6),
               180, 360, fill=traits.hair)
    if traits.hair_style == 3:  # a parting: skin-coloured wedge on one side
        draw.polygon([(cx - face_rx * 0.3, top), (cx - face_rx * 0.1, top), (cx - face_rx * 0.2, top + hair_height)],
                     fill=traits.skin)

    eye_y = top + traits.eye_height * 2 * face_ry
    eye_dx = traits.eye_spacing * scale / 2
    eye_r = 0.035 * scale
    for side in (-1, 1):
        ex = cx + side * eye_dx
        _ellipse(draw, ex, eye_y, eye_r * 1.6, eye_r, (245, 245, 245))
        _ellipse(draw, ex, eye_y, eye_r * 0.8, eye_r * 0.8, traits.eyes)
        draw.line((ex - eye_r * 1.8, eye_y - eye_r * 2, ex + eye_r * 1.8, eye_y - eye_r * 2.2),
                  fill=traits.hair, width=max(2, int(eye_r * 0.6)))
        if traits.has_glasses:
            draw.ellipse((ex - eye_r * 2.3, eye_y - eye_r * 1.8, ex + eye_r * 2.3, eye_y + eye_r * 1.8),
                         outline=(20, 20, 20), width=max(2, int(eye_r * 0.4)))

    nose_bottom = eye_y + traits.nose_length * scale
    shade = tuple(int(c * 0.8) for c in traits.skin)
    draw.polygon([(cx, eye_y), (cx - 0.03 * scale, nose_bottom), (cx + 0.03 * scale, nose_bottom)], fill=shade)
    mouth_y = nose_bottom + (cy + face_ry - nose_bottom) * 0.4
    mouth_rx = traits.mouth_width * scale / 2
    draw.chord((cx - mouth_rx, mouth_y - mouth_rx * 0.4, cx + mouth_rx, mouth_y + mouth_rx * 0.5),
               0, 180, fill=(150, 50, 60))
    if traits.has_beard:
        draw.chord((cx - face_rx, cy, cx + face_rx, cy + face_ry * 1.02), 20, 160, fill=traits.hair)

    image = image.rotate(rng.normal(0, 8), resample=Image.BILINEAR, fillcolor=background)
    image = image.resize((size_px, size_px), Image.LANCZOS)
    return _vary_photo(image, rng)


def _vary_photo(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Apply lighting gradient, sensor noise and occasional blur, like real photos vary."""
    pixels = np.asarray(image, dtype=np.float32)
    size = pixels.shape[0]
    direction = rng.normal(size=2)
    ramp = (np.arange(size)[:, None] * direction[0] + np.arange(size)[None, :] * direction[1]) / size
    lighting = rng.uniform(0.7, 1.25) + 0.25 * ramp
    pixels = pixels * lighting[..., None] + rng.normal(0, rng.uniform(3, 12), pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return photo


def generate_synthetic_dataset(
    root: Path, *, identities: int, images_per_identity: int, image_size_px: int, seed: int
) -> Path:
    """Write `root/pins_<Name>/<Name><n>.jpg` files and return `root`."""
    if not 2 <= identities <= len(IDENTITY_NAMES):
        raise ValueError(f"synthetic identities must be between 2 and {len(IDENTITY_NAMES)}, got {identities}")
    rng = np.random.default_rng(seed)
    for name in IDENTITY_NAMES[:identities]:
        traits = random_traits(rng)
        folder = root / f"pins_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(images_per_identity):
            draw_face(traits, rng, image_size_px).save(folder / f"{name}{index}.jpg", quality=90)
    log.info("Drew %d synthetic identities x %d images (%d px) into %s",
             identities, images_per_identity, image_size_px, root)
    return root
