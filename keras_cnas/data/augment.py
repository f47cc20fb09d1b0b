"""MIT-LL style training augmentation and the ``tf.data`` input pipeline.

The augmentation is the one the MIT-LL Monte Carlo search trains with: a random horizontal flip
(only where flipping keeps the meaning: not for digits), zero padding followed by a random crop
back to the original size, and an optional brightness/contrast jitter for colour images.

Everything random here is *stateless*: each batch gets a ``[2]`` seed from
``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``, so a pipeline built twice with
the same seed yields the same batches, epoch after epoch, while each epoch still sees fresh
augmentations. TensorFlow is imported lazily so that ``import keras_cnas.data`` stays light.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for annotations; importing TF at module level would be heavy.
    from keras_cnas._keras import tf

__all__ = ["Augmentation", "augment_images", "make_tf_dataset"]

# Colour jitter strengths: mild, because the searched networks are small and the images are
# 32x32; stronger jitter (e.g. brightness 63/255) slowed convergence of tiny models.
BRIGHTNESS_MAX_DELTA = 0.2
CONTRAST_RANGE = (0.8, 1.2)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """How training images are augmented (the MIT-LL recipe).

    Args:
        flip: Randomly mirror images left-right. Off for digits: a mirrored digit is not the
            same digit.
        pad: Zero-pad each side by this many pixels, then randomly crop back to the original
            size (a random translation of up to ``pad`` pixels). ``0`` disables it; ``None``
            means ``max(1, height // 8)``, resolved by :meth:`resolved_pad`.
        color_jitter: Random brightness and contrast changes; only valid for 3-channel images.

    Example:
        >>> Augmentation(flip=True, pad=4)
        Augmentation(flip=True, pad=4, color_jitter=False)
        >>> Augmentation().resolved_pad(28)
        3
    """

    flip: bool = False
    pad: int | None = None
    color_jitter: bool = False

    def __post_init__(self) -> None:
        for field in ("flip", "color_jitter"):
            value = getattr(self, field)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(
                    f"Augmentation.{field} must be True or False; got {value!r} "
                    f"({type(value).__name__})")
        # bool is an int subclass: Augmentation(pad=True) is almost certainly a mistake.
        if self.pad is not None and (
                isinstance(self.pad, (bool, np.bool_))
                or not isinstance(self.pad, (int, np.integer)) or self.pad < 0):
            raise ValueError(
                f"Augmentation.pad must be a non-negative int (pixels) or None for "
                f"max(1, height // 8); got {self.pad!r}")

    @classmethod
    def none(cls) -> "Augmentation":
        """The identity augmentation: no flip, no translation, no jitter."""
        return cls(flip=False, pad=0, color_jitter=False)

    def resolved_pad(self, height: int) -> int:
        """The padding in pixels for images of the given height."""
        return max(1, height // 8) if self.pad is None else int(self.pad)

    def is_identity(self, height: int) -> bool:
        """Whether this augmentation leaves every image unchanged."""
        return not (self.flip or self.color_jitter or self.resolved_pad(height) > 0)


def _tf() -> Any:
    from keras_cnas._keras import tf  # lazy: see the module docstring.

    return tf


def augment_images(images: "tf.Tensor", augmentation: Augmentation,
                   seed: "tf.Tensor | tuple[int, int]") -> "tf.Tensor":
    """Augments a batch of NHWC float images in [0, 1], deterministically given ``seed``.

    Each image in the batch gets its own flip, crop offset and jitter, all drawn with stateless
    random ops from ``seed`` (a shape ``[2]`` integer tensor or pair).

    Args:
        images: A ``[batch, height, width, channels]`` float32 tensor with values in [0, 1].
        augmentation: What to apply.
        seed: Two integers; the same seed and images give the same output.

    Returns:
        A tensor with the shape and dtype of ``images``.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
        >>> y = augment_images(x, Augmentation(pad=1), seed=(0, 1))
        >>> tuple(y.shape)
        (4, 8, 8, 1)
    """
    tf = _tf()
    images = tf.convert_to_tensor(images, dtype=tf.float32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    static_shape = images.shape
    if static_shape.rank != 4:
        raise ValueError(f"images must be a 4-D NHWC batch; got shape {static_shape}")
    height, width, channels = static_shape[1], static_shape[2], static_shape[3]
    if height is None or width is None or channels is None:
        raise ValueError(f"images need a static height, width and channels; got {static_shape}")
    if augmentation.color_jitter and channels != 3:
        raise ValueError(
            f"Augmentation.color_jitter needs 3-channel images; got {channels} channels")
    batch = tf.shape(images)[0]
    # Independent seeds per transformation, so enabling one does not change the others.
    flip_seed, crop_seed, bright_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4))

    if augmentation.flip:
        mirror = tf.random.stateless_uniform([batch], flip_seed) < 0.5
        images = tf.where(mirror[:, None, None, None], tf.reverse(images, axis=[2]), images)

    pad = augmentation.resolved_pad(height)
    if pad > 0:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        # One (row, column) offset per image; cropping by gathering rows then columns keeps
        # the whole batch in two vectorised ops instead of a per-image loop.
        offsets = tf.random.stateless_uniform(
            [batch, 2], crop_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(height)[None, :]
        cols = offsets[:, 1:] + tf.range(width)[None, :]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)

    if augmentation.color_jitter:
        delta = tf.random.stateless_uniform(
            [batch, 1, 1, 1], bright_seed, -BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA)
        factor = tf.random.stateless_uniform(
            [batch, 1, 1, 1], contrast_seed, CONTRAST_RANGE[0], CONTRAST_RANGE[1])
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        images = (images + delta - mean) * factor + mean
        images = tf.clip_by_value(images, 0.0, 1.0)

    return tf.ensure_shape(images, [None, height, width, channels])


def make_tf_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int,
                    augmentation: Augmentation | None, shuffle: bool,
                    seed: int) -> "tf.data.Dataset":
    """Builds a batched, prefetched ``tf.data.Dataset`` of ``(images, labels)``.

    Prefer :meth:`keras_cnas.data.Dataset.tf_dataset`, which picks the arrays and defaults.

    Args:
        x: ``[n, height, width, channels]`` float32 images in [0, 1].
        y: ``[n]`` integer labels.
        batch_size: Examples per batch; the last batch may be smaller.
        augmentation: Applied to every batch, or ``None`` for none.
        shuffle: Reshuffle the examples every epoch.
        seed: Seeds the shuffle and the augmentation; the same seed gives the same batches.

    Returns:
        A dataset whose elements are ``(float32 [b, h, w, c], int32 [b])`` pairs.
    """
    tf = _tf()
    images = tf.convert_to_tensor(x, dtype=tf.float32)
    labels = tf.convert_to_tensor(y, dtype=tf.int32)
    n = int(x.shape[0])
    # Shuffle and batch *indices*, then gather: a shuffle buffer of whole images would copy
    # the training set a second time.
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if augmentation is not None and not augmentation.is_identity(int(x.shape[1])):
        # A different stream from the shuffle's (seed + 1) so the two are not correlated.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_images(batch[0], augmentation, s), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
