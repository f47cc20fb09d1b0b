"""scikit-learn's bundled 8x8 digits: the zero-download default dataset."""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from keras_cnas.data.augment import Augmentation
from keras_cnas.data.dataset import RawData, register, stratified_sample

__all__ = ["TEST_FRACTION", "TEST_SEED", "load_digits_raw"]

logger = logging.getLogger(__name__)

# load_digits has no official test split. A fixed 20 % (stratified, fixed seed, independent of
# the `seed` argument of load()) keeps test accuracies comparable across runs and seeds.
TEST_FRACTION = 0.2
TEST_SEED = 1797


@register("digits")
def load_digits_raw(data_dir: pathlib.Path | None = None, *, max_per_class: int | None = None,
                    max_train_examples: int | None = None) -> RawData:
    """The 1,797 8x8 grey digits of ``sklearn.datasets.load_digits``, split 80/20.

    Pixel values 0..16 are scaled to [0, 1]. Prefer ``keras_cnas.data.load("digits")``.

    Args:
        data_dir: Ignored: the data ships inside the scikit-learn wheel.
        max_per_class: Unused (the data is tiny); :func:`~keras_cnas.data.load` applies it.
        max_train_examples: Unused; :func:`~keras_cnas.data.load` applies it.

    Raises:
        ImportError: scikit-learn is not installed.

    Example:
        >>> raw = load_digits_raw()
        >>> raw.x_train.shape, raw.x_test.shape
        ((1438, 8, 8, 1), (359, 8, 8, 1))
    """
    del max_per_class, max_train_examples  # cheap to load in full; load() applies them.
    if data_dir is not None:
        logger.warning("digits is bundled with scikit-learn; ignoring data_dir=%s", data_dir)
    try:
        from sklearn.datasets import load_digits  # lazy: scikit-learn is an optional extra.
    except ImportError as e:
        raise ImportError(
            "the 'digits' dataset needs scikit-learn, which is not installed; install it with "
            'pip install "keras_cnas[examples]"') from e
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., np.newaxis]
    y = bunch.target.astype(np.int32)
    test_idx = stratified_sample(y, int(round(len(y) * TEST_FRACTION)),
                                 np.random.default_rng(TEST_SEED))
    train = np.ones(len(y), dtype=bool)
    train[test_idx] = False
    return RawData(x_train=x[train], y_train=y[train], x_test=x[test_idx], y_test=y[test_idx],
                   class_names=[str(i) for i in range(10)],
                   # No flip: a mirrored 2 or 5 is not a digit. 1-pixel translations only.
                   augmentation=Augmentation(flip=False, pad=1, color_jitter=False))
