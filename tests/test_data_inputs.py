"""search(data=...) inputs: tf.data pipelines, arrays, a folder of images per class, --augment."""

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas._keras import tf
from keras_cnas.errors import DataError


def _images(n=60, shape=(8, 8, 1), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), (np.arange(n) % classes).astype(np.int32)


def test_a_batched_pipeline_is_read_with_a_stratified_validation_split():
    x, y = _images()
    data = cnas.data.from_tf_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
                                     validation_split=0.2)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (48, 12, 0)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 3
    assert np.bincount(data.y_val).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(np.sort(np.concatenate([data.x_train, data.x_val]), axis=0),
                                  np.sort(x, axis=0))


def test_unbatched_one_hot_and_0_to_255_pipelines_with_a_validation_one():
    x, y = _images()
    train = tf.data.Dataset.from_tensor_slices((x * 255.0, tf.one_hot(y, 3)))  # unbatched
    val = tf.data.Dataset.from_tensor_slices((x[:9] * 255.0, y[:9])).batch(4)
    data = cnas.data.from_tf_dataset(train, val)
    assert len(data.y_train) == 60 and len(data.y_val) == 9  # the given one, no split
    np.testing.assert_array_equal(data.y_train, y)
    np.testing.assert_allclose(data.x_train, x, atol=1e-6)  # 0..255 floats divided by 255


def test_pipelines_that_cannot_be_read_say_why():
    x, y = _images()
    with pytest.raises(DataError, match="infinite"):
        cnas.data.from_tf_dataset(tf.data.Dataset.from_tensor_slices((x, y)).repeat())
    with pytest.raises(DataError, match=r"\(image, label\) pairs"):
        cnas.data.from_tf_dataset(tf.data.Dataset.from_tensor_slices(x))
    with pytest.raises(DataError, match="data: expected a keras_cnas.data.Dataset"):
        cnas.data.as_dataset({"x": x})


def test_as_dataset_takes_arrays_pipelines_and_datasets():
    x, y = _images()
    assert len(cnas.data.as_dataset((x, y)).y_val) == 6
    assert len(cnas.data.as_dataset((x, y, x[:5], y[:5])).y_test) == 5
    pipeline = tf.data.Dataset.from_tensor_slices((x, y))
    assert len(cnas.data.as_dataset((pipeline, pipeline.take(7))).y_val) == 7
    digits = cnas.data.load("digits")
    assert cnas.data.as_dataset(digits) is digits


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(array).numpy())


def test_a_folder_of_images_per_class_is_resized_and_split(tmp_path):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog"]):
        for i in range(5):
            _write_png(tmp_path / "photos" / name / f"{i}.png",
                       rng.integers(0, 256, (12 + i, 10, 3), dtype=np.uint8))
    (tmp_path / "photos" / "dog" / "notes.txt").write_text("not an image")
    data = cnas.data.from_directory(tmp_path / "photos", image_size=(6, 6), validation_split=0.2)
    assert data.class_names == ("cat", "dog") and data.input_shape == (6, 6, 3)
    assert (len(data.y_train), len(data.y_val)) == (8, 2)
    assert data.augmentation == cnas.data.augmentation_named("crop")
    grey = cnas.data.from_directory(tmp_path / "photos", image_size=(4, 4), color_mode="grayscale",
                                    augmentation="flip+crop")
    assert grey.input_shape == (4, 4, 1) and grey.augmentation.flip


def test_a_folder_with_train_and_test_subfolders_keeps_its_test_split(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        for name in ("a", "b"):
            for i in range(n):
                _write_png(tmp_path / split / name / f"{i}.png", np.full((5, 5, 1), 40 * i, np.uint8))
    data = cnas.data.from_directory(tmp_path, color_mode="grayscale", validation_split=0.25)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (9, 3, 4)
    assert data.input_shape == (5, 5, 1)  # the images' own size


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        cnas.data.from_directory(tmp_path / "missing")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no class sub-folders holding images"):
        cnas.data.from_directory(tmp_path / "empty")
    bad = tmp_path / "bad" / "cat" / "x.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="x.png: cannot decode it as an image"):
        cnas.data.from_directory(tmp_path / "bad")
    with pytest.raises(ValueError, match="augment: expected one of none, flip, crop, flip\\+crop"):
        cnas.data.augmentation_named("mirror")
