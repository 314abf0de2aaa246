"""tf.data input from split manifests: parallel decode, resize, batch and prefetch."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from facerec.image_store import FolderImages, PackedImages
from facerec.runtime import worker_label, worker_share

# Bounded: a buffer of the whole set would hold every decoded image in RAM (1.8 GB at 224 px).
SHUFFLE_BUFFER_IMAGES = 2048
MEMORY_CACHE_SHARE = 0.5  # cache: auto picks memory when the decoded images need at most this share of free RAM
# Images read from the packed dataset per Python call.
PACKED_READ_BATCH = 64


def label_ids(identities: pd.Series, labels: list[str]) -> np.ndarray:
    """Map identity names to their index in the saved label list."""
    index = {name: position for position, name in enumerate(labels)}
    unknown = sorted(set(identities) - set(index))
    if unknown:
        raise ValueError(f"identities not in the model's label list: {unknown[:5]}")
    return identities.map(index).to_numpy(dtype=np.int32)


def decode_and_resize(path: tf.Tensor, image_size_px: int) -> tf.Tensor:
    """Read any JPEG/PNG/GIF/BMP file as 3-channel RGB and resize to a uint8 square.

    uint8 keeps cached images at a quarter of float32's size; the model casts and preprocesses.
    """
    return decode_encoded(tf.io.read_file(path), image_size_px)


def resize_square(image: tf.Tensor, image_size_px: int) -> tf.Tensor:
    """Resize an RGB image (or a batch) to a uint8 square as training does; exports and predict's faces reuse it."""
    # Anti-aliasing only matters when shrinking, and costs half the input pipeline's speed.
    shrinking = tf.reduce_max(tf.shape(image)[-3:-1]) > image_size_px
    resized = tf.cond(
        shrinking,
        lambda: tf.image.resize(image, (image_size_px, image_size_px), antialias=True),
        lambda: tf.image.resize(image, (image_size_px, image_size_px)),
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def decode_encoded(encoded: tf.Tensor, image_size_px: int) -> tf.Tensor:
    """decode_and_resize for bytes already read."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return resize_square(image, image_size_px)


def image_sources(relatives: list[str], images_at: Path) -> tuple[tf.data.Dataset, object]:
    """Per image, what locates it (a file name, or an (offset, size) range of the packed dataset), and the store."""
    # Not open_images: a folder need not exist while a filled disk cache answers for it (tf.data
    # names any file it then cannot read).
    images = PackedImages(images_at) if Path(images_at).is_file() else FolderImages(images_at)
    if isinstance(images, FolderImages):
        return tf.data.Dataset.from_tensor_slices(images.file_paths(relatives)), images
    ranges = np.array([images.byte_range(relative) for relative in relatives], dtype=np.int64).reshape(-1, 2)
    return tf.data.Dataset.from_tensor_slices(ranges), images


def decode_sources(pairs: tf.data.Dataset, images, image_size_px: int) -> tf.data.Dataset:
    """(source, label) pairs → (image, label), read and decoded in parallel, in order."""
    if isinstance(images, FolderImages):
        return pairs.map(lambda path, target: (decode_and_resize(path, image_size_px), target),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Whole batches of byte ranges per Python call: one call per image would cost more than the read.
    encoded = pairs.batch(PACKED_READ_BATCH).map(
        lambda ranges, targets: (tf.numpy_function(images.read_ranges, [ranges[:, 0], ranges[:, 1]], tf.string,
                                                   stateful=False), targets),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    return encoded.map(lambda data, target: (decode_encoded(data, image_size_px), target),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def decoded_examples(frame: pd.DataFrame, images_at: Path, labels: list[str], *, image_size_px: int,
                     cache: str = "none", cache_shards: int = 1) -> tf.data.Dataset:
    """Unbatched (image, label id) pairs in the frame's order, decoded in parallel and cached as asked.

    `images_at` is the packed dataset or a folder of images, both keyed by the frame's paths. A disk
    cache is split into `cache_shards` files, read back in parallel: one file has one sequential
    reader (~10k images/s), the ceiling of the whole input pipeline.
    """
    sources, images = image_sources(list(frame["path"]), images_at)
    targets = tf.data.Dataset.from_tensor_slices(label_ids(frame["identity"], labels))
    pairs = tf.data.Dataset.zip(sources, targets)

    def decoded(part: tf.data.Dataset) -> tf.data.Dataset:
        return decode_sources(part, images, image_size_px)

    if cache == "none":
        return decoded(pairs)
    if cache == "memory":
        # Decoded, resized images: every epoch after the first skips JPEG decoding entirely.
        return decoded(pairs).cache()
    prefix = _prepare_disk_cache(Path(cache), cache_shards)

    def cached_shard(index: tf.Tensor) -> tf.data.Dataset:
        # Shard k holds elements k, k + n, k + 2n, …: read round-robin they come back in the frame's order.
        filename = tf.strings.join([prefix, tf.strings.as_string(index, width=3, fill="0"), f"-of-{cache_shards:03d}"])
        return decoded(pairs.shard(cache_shards, index)).cache(filename)

    return tf.data.Dataset.range(cache_shards).interleave(
        cached_shard, cycle_length=cache_shards, block_length=1, num_parallel_calls=cache_shards, deterministic=True)


def _prepare_disk_cache(cache: Path, cache_shards: int) -> str:
    """Make the cache folder usable for `cache_shards` files; return the shards' common file-name prefix."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    # A run killed while filling the cache leaves a lockfile that would block every later run;
    # the cache itself only counts once its index is written, so the lock is safe to drop.
    for stale_lock in cache.parent.glob("*.lockfile"):
        stale_lock.unlink()
    # Files of another shard count (or the single-file layout) are never read again: free their space.
    for other_layout in cache.parent.glob(f"{cache.name}*"):
        if f"-of-{cache_shards:03d}" not in other_layout.name:
            other_layout.unlink()
    return f"{cache}-"


def make_dataset(
    frame: pd.DataFrame,
    images_at: Path,
    labels: list[str],
    *,
    image_size_px: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    cache: str = "none",
    cache_shards: int = 1,
    pad_last_batch: bool = False,
) -> tf.data.Dataset:
    """Batches of (image, label id); only the training set is shuffled, and afresh each epoch.

    pad_last_batch: every batch full (one shape, so XLA compiles once), as (image, label id,
    sample weight) with the padding weighted 0.
    """
    if shuffle:
        # Cache in a seeded mixed order, so the bounded shuffle buffer after the cache still mixes identities.
        frame = frame.sample(frac=1.0, random_state=seed)
    dataset = decoded_examples(frame, images_at, labels, image_size_px=image_size_px, cache=cache,
                               cache_shards=cache_shards)
    if shuffle:
        dataset = dataset.shuffle(min(len(frame), SHUFFLE_BUFFER_IMAGES), seed=seed, reshuffle_each_iteration=True)
    if pad_last_batch:
        dataset = padded_to_full_batches(dataset, len(frame), batch_size, image_size_px)
    return dataset.batch(batch_size, drop_remainder=pad_last_batch).prefetch(tf.data.AUTOTUNE)


def padded_to_full_batches(examples: tf.data.Dataset, size: int, batch_size: int, image_size_px: int) -> tf.data.Dataset:
    """(image, label, weight) with black zero-weight images appended up to a whole number of batches.

    Real images weigh (size + padding) / size rather than 1: Keras divides a batch's loss by the
    batch size, padding included, so this keeps the mean loss exact; weighted accuracy is
    unaffected by the scale.
    """
    padding = -size % batch_size
    weight = (size + padding) / size
    real = examples.map(lambda image, label: (image, label, tf.constant(weight, tf.float32)))
    blank = tf.data.Dataset.from_tensors((tf.zeros((image_size_px, image_size_px, 3), tf.uint8),
                                          tf.constant(0, tf.int32), tf.constant(0.0, tf.float32)))
    return real.concatenate(blank.repeat(padding))


def decoded_gb(images: int, image_size_px: int) -> float:
    """GB the decoded uint8 RGB squares of `images` images take in a cache."""
    return images * image_size_px**2 * 3 / 1e9


def resolve_cache(setting: str, images: int, image_size_px: int, available_gb: float) -> str:
    """train.cache as it will run: auto becomes memory when the decoded set fits with room to spare, else disk."""
    if setting != "auto":
        return setting
    # Half the RAM free at start leaves room for the model, the shuffle buffer, prefetching and other jobs.
    return "memory" if decoded_gb(images, image_size_px) <= MEMORY_CACHE_SHARE * available_gb else "disk"


def cache_target(setting: str, cache_dir: Path, split_csv: Path, image_size_px: int, images_from: str = "",
                 order_seed: int | None = None) -> str:
    """Where tf.data caches decoded images (`setting` resolved); a disk cache is keyed by the split's content and size.

    `images_from` tells apart images behind the same paths: the manifest (every image's sha256) and the
    faces settings; `order_seed` is the seed of the training set's cached order (and so of each worker's share).
    """
    if setting != "disk":
        return setting
    order = "" if order_seed is None else f"seed {order_seed}"
    digest = hashlib.sha256(split_csv.read_bytes() + (images_from + order).encode("utf-8")).hexdigest()[:16]
    # One cache per task: workers sharing a host must not write the same cache files, and each
    # caches its own share of the images, which depends on how many workers there are.
    worker = f"-{worker_label()}-of-{worker_share()[1]}" if os.environ.get("TF_CONFIG") else ""
    return str(cache_dir / f"{split_csv.stem}-{digest}-{image_size_px}px{worker}" / "cache")


@dataclass(frozen=True)
class ShuffledEpochs:
    """The training set as a stream of epochs whose order depends only on (seed, epoch number).

    tf.data's reshuffle_each_iteration draws each epoch's order from how often the dataset was
    iterated before, so a run resumed at epoch k would replay epoch 0's order; here epoch k's
    order is the same whether or not the run was interrupted before it.
    """

    examples: tf.data.Dataset  # decoded (image, label id) pairs, unbatched, cached as asked
    size: int
    batch_size: int
    seed: int
    options: tf.data.Options | None = None
    fill_last_batch: bool = False  # every batch full (one shape for XLA): the short last one repeats its images

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def with_options(self, options: tf.data.Options) -> ShuffledEpochs:
        """Options (e.g. multi-worker sharding) for every stream this returns, as Dataset.with_options."""
        return replace(self, options=options)

    def one_epoch(self, epoch: tf.Tensor) -> tf.data.Dataset:
        """Epoch `epoch`'s batches, in the order (seed, epoch) gives; called while tracing flat_map's function."""
        # The order depends on this stream's seed alone, not on TensorFlow's global seed: and with a
        # global seed of 0 (base.seed 0), TF 2.21's seed helper fails on a tensor seed. The graph
        # is the traced function's own, so nothing else is affected.
        tf.compat.v1.get_default_graph().seed = None
        seed = tf.constant(self.seed, tf.int64) * 1_000_003 + epoch  # distinct seeds for distinct (seed, epoch)
        shuffled = self.examples.shuffle(min(self.size, SHUFFLE_BUFFER_IMAGES), seed=seed, reshuffle_each_iteration=False)
        batches = shuffled.batch(self.batch_size)  # batched per epoch: a short last batch stays in its epoch
        return batches.map(self._filled) if self.fill_last_batch else batches

    def _filled(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """A batch of exactly batch_size, cycling through its own images when short (a no-op when full).

        Dropping the remainder instead would leave an epoch of 12,264 images at batch 32 with
        383 steps, a prime, and so no steps_per_execution above 1.
        """
        count = tf.shape(labels)[0]
        picks = tf.range(self.batch_size) % count
        # Only the last batch of an epoch is short; copying every full batch would cost input speed.
        images, labels = tf.cond(count < self.batch_size, lambda: (tf.gather(images, picks), tf.gather(labels, picks)),
                                 lambda: (images, labels))
        return tf.ensure_shape(images, [self.batch_size, *images.shape[1:]]), tf.ensure_shape(labels, [self.batch_size])

    def epochs(self, first_epoch: int, end_epoch: int, batches_per_epoch: int | None = None) -> tf.data.Dataset:
        """Batches of epochs first_epoch … end_epoch - 1, each shuffled by its own seed, back to back.

        `batches_per_epoch` (at most size // batch_size) keeps only that many full batches of each epoch.
        """
        def epoch_batches(epoch):
            batches = self.one_epoch(epoch)
            return batches if batches_per_epoch is None else batches.take(batches_per_epoch)

        stream = tf.data.Dataset.range(first_epoch, end_epoch).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)
        return stream.with_options(self.options) if self.options else stream


def training_epochs(frame: pd.DataFrame, images_at: Path, labels: list[str], *, image_size_px: int, batch_size: int,
                    seed: int, cache: str = "none", cache_shards: int = 1,
                    fill_last_batch: bool = False, share: tuple[int, int] = (0, 1)) -> ShuffledEpochs:
    """The training split as ShuffledEpochs, decoded and cached like make_dataset's.

    `share` (index, count): only every count-th image of the seeded order from `index` on, one
    worker's part of the set, so each worker decodes and caches its part alone.
    """
    # Cache in a seeded mixed order, so the bounded shuffle buffer after the cache still mixes identities.
    index, count = share
    frame = frame.sample(frac=1.0, random_state=seed).iloc[index::count]
    examples = decoded_examples(frame, images_at, labels, image_size_px=image_size_px, cache=cache,
                                cache_shards=cache_shards)
    return ShuffledEpochs(examples, len(frame), batch_size, seed, fill_last_batch=fill_last_batch)
