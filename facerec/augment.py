"""Random rotation, shift, shear, zoom and horizontal flip as one affine warp per image, XLA-compatible.

Keras' RandomRotation/Translation/Shear/Zoom each resample the image through
ImageProjectiveTransformV3, which XLA cannot compile, so a model holding them trains without
`jit_compile`. Here the five draws compose into one matrix per image and the image is resampled
once, bilinearly, with gathers that XLA compiles.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops


def affine_matrices(angle_rad, shift_xy_px, shear_xy, zoom_xy, flip, height: int, width: int):
    """(batch, 2, 3) maps from output pixel (x, y, 1) to the input pixel it samples, about the image centre.

    Each argument holds one value (or x/y pair) per image: rotation angle, shift in pixels, shear
    factors, zoom factors (> 1 zooms out: a wider region fills the output) and a 0/1 flip flag.
    """
    cos, sin = ops.cos(angle_rad), ops.sin(angle_rad)
    shear_x, shear_y = shear_xy[:, 0], shear_xy[:, 1]
    # Flip mirrors x before the rest; zoom scales each axis; shear couples them; rotation turns.
    scale_x = zoom_xy[:, 0] * (1.0 - 2.0 * flip)
    scale_y = zoom_xy[:, 1]
    # [[cos, -sin], [sin, cos]] @ [[1, shear_x], [shear_y, 1]] @ diag(scale_x, scale_y)
    a00 = (cos - sin * shear_y) * scale_x
    a01 = (cos * shear_x - sin) * scale_y
    a10 = (sin + cos * shear_y) * scale_x
    a11 = (sin * shear_x + cos) * scale_y
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    # input = centre + A (output - centre) + shift
    offset_x = centre_x - a00 * centre_x - a01 * centre_y + shift_xy_px[:, 0]
    offset_y = centre_y - a10 * centre_x - a11 * centre_y + shift_xy_px[:, 1]
    rows = [ops.stack([a00, a01, offset_x], axis=-1), ops.stack([a10, a11, offset_y], axis=-1)]
    return ops.stack(rows, axis=1)


def warp(images, matrices):
    """Resample float images (batch, height, width, channels) through `matrices`, bilinear, edges extended."""
    batch, height, width, channels = (ops.shape(images)[0], images.shape[1], images.shape[2], images.shape[3])
    rows, columns = ops.meshgrid(ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"),
                                 indexing="ij")
    grid = ops.stack([ops.reshape(columns, (-1,)), ops.reshape(rows, (-1,)), ops.ones((height * width,))])
    source = ops.matmul(ops.cast(matrices, "float32"), grid)  # (batch, 2, pixels): x then y
    # Clamping the sampled point to the image repeats the edge pixels (Keras' fill_mode="nearest").
    source_x = ops.clip(source[:, 0], 0.0, width - 1.0)
    source_y = ops.clip(source[:, 1], 0.0, height - 1.0)
    left, top = ops.floor(source_x), ops.floor(source_y)
    weight_x, weight_y = (source_x - left)[..., None], (source_y - top)[..., None]
    left, top = ops.cast(left, "int32"), ops.cast(top, "int32")
    right, bottom = ops.minimum(left + 1, width - 1), ops.minimum(top + 1, height - 1)
    flat = ops.reshape(images, (-1, channels))
    first_pixel = (ops.arange(batch, dtype="int32") * (height * width))[:, None]

    def pixels(y, x):
        return ops.take(flat, first_pixel + y * width + x, axis=0)  # (batch, pixels, channels)

    upper = pixels(top, left) * (1.0 - weight_x) + pixels(top, right) * weight_x
    lower = pixels(bottom, left) * (1.0 - weight_x) + pixels(bottom, right) * weight_x
    return ops.reshape(upper * (1.0 - weight_y) + lower * weight_y, (batch, height, width, channels))


@keras.saving.register_keras_serializable(package="facerec")
class RandomAffine(layers.Layer):
    """ImageDataGenerator's geometric family in one warp per image, active only while training.

    Ranges as Keras' layers read them: rotation uniform in ±rotation_deg, shift in ±shift_fraction
    of the side, shear factors in ±shear_fraction, zoom in 1 ± zoom_fraction per axis, and a
    horizontal flip with probability 1/2. Always float32: the warp's precision should not
    depend on the mixed-precision policy.
    """

    def __init__(self, rotation_deg=0.0, shift_fraction=0.0, shear_fraction=0.0, zoom_fraction=0.0,
                 horizontal_flip=False, seed=None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.rotation_deg, self.shift_fraction = float(rotation_deg), float(shift_fraction)
        self.shear_fraction, self.zoom_fraction = float(shear_fraction), float(zoom_fraction)
        self.horizontal_flip, self.seed = bool(horizontal_flip), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def sample_parameters(self, batch_size):
        """One draw per image: angle (rad), shift (fraction of the side), shear, zoom, flip (0/1)."""
        def uniform(shape, bound, centre=0.0):
            return keras.random.uniform(shape, centre - bound, centre + bound, seed=self.seed_generator)

        flip = keras.random.uniform((batch_size,), seed=self.seed_generator) < 0.5
        return {"angle_rad": uniform((batch_size,), math.radians(self.rotation_deg)),
                "shift_xy": uniform((batch_size, 2), self.shift_fraction),
                "shear_xy": uniform((batch_size, 2), self.shear_fraction),
                "zoom_xy": uniform((batch_size, 2), self.zoom_fraction, centre=1.0),
                "flip": ops.cast(ops.logical_and(flip, self.horizontal_flip), "float32")}

    def call(self, inputs, training=None):
        images = ops.cast(inputs, self.compute_dtype)
        if not training:
            return images
        height, width = images.shape[1], images.shape[2]
        drawn = self.sample_parameters(ops.shape(images)[0])
        shift_px = drawn["shift_xy"] * ops.convert_to_tensor([width, height], dtype="float32")
        matrices = affine_matrices(drawn["angle_rad"], shift_px, drawn["shear_xy"], drawn["zoom_xy"], drawn["flip"],
                                   height, width)
        return warp(images, matrices)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation_deg": self.rotation_deg, "shift_fraction": self.shift_fraction,
                "shear_fraction": self.shear_fraction, "zoom_fraction": self.zoom_fraction,
                "horizontal_flip": self.horizontal_flip, "seed": self.seed}
