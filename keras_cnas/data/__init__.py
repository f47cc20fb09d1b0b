"""Datasets for architecture search: NumPy splits plus a seeded, augmented ``tf.data`` builder.

Nothing here downloads anything: ``digits`` ships with scikit-learn, ``mnist`` and ``cifar10``
read files you point ``data_dir`` at. Importing this package does not import TensorFlow; it is
loaded on first use (decoding images, building a ``tf.data`` pipeline).

Example:
    >>> from keras_cnas import data
    >>> digits = data.load("digits")
    >>> digits.input_shape, digits.num_classes
    ((8, 8, 1), 10)
    >>> ds = digits.tf_dataset("train", batch_size=64)   # shuffled, augmented, prefetched
    >>> sorted(data.DATASETS)
    ['cifar10', 'digits', 'mnist']
"""

from keras_cnas.data.augment import Augmentation, augment_images
from keras_cnas.data.dataset import (
    DATASETS,
    SPLITS,
    Dataset,
    DatasetLoader,
    RawData,
    from_arrays,
    load,
    register,
)

from keras_cnas.data.directory import AUGMENTATIONS, augmentation_named, from_directory
from keras_cnas.data.tfdata import as_dataset, from_tf_dataset

# Imported for their side effect: each registers its loader in DATASETS.
from keras_cnas.data import cifar10, digits, mnist  # noqa: E402,F401  isort: skip

__all__ = [
    "DATASETS", "SPLITS", "Augmentation", "Dataset", "DatasetLoader", "RawData",
    "AUGMENTATIONS", "augment_images", "augmentation_named", "as_dataset", "from_arrays",
    "from_directory", "from_tf_dataset", "load", "register",
]
