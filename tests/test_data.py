"""Tests of keras_cnas.data: loaders, validation, splits and the tf.data pipeline."""

from __future__ import annotations

import gzip
import pathlib
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from keras_cnas import data
from keras_cnas.data import Augmentation, augment_images, from_arrays, load
from keras_cnas.errors import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def _tf():
    from keras_cnas._keras import tf

    return tf


# ---------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return load("digits")


def test_digits_loads_float_images_in_unit_range_with_expected_splits(digits):
    assert digits.name == "digits"
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10 and digits.class_names == tuple(str(i) for i in range(10))
    assert len(digits.y_train) + len(digits.y_val) + len(digits.y_test) == 1797
    assert len(digits.y_test) == 359  # round(20 % of 1797)
    assert len(digits.y_val) == round(0.1 * (1797 - 359))
    for x, y in (digits.arrays("train"), digits.arrays("validation"), digits.arrays("test")):
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == (8, 8, 1)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and len(y) == len(x)
    assert digits.x_train.max() == 1.0  # 16/16: scaled by 16, not 255
    # Stratified: every class appears in every split in about its overall proportion.
    for y in (digits.y_train, digits.y_val, digits.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.8 * counts.mean()


def test_digits_test_split_is_fixed_whatever_the_seed(digits):
    other = load("digits", seed=7, validation_split=0.25)
    np.testing.assert_array_equal(digits.x_test, other.x_test)
    np.testing.assert_array_equal(digits.y_test, other.y_test)


def test_different_seeds_give_different_validation_splits(digits):
    same = load("digits", seed=0)
    other = load("digits", seed=1)
    np.testing.assert_array_equal(digits.x_val, same.x_val)  # seeded: reproducible
    assert not np.array_equal(digits.x_val, other.x_val)
    # Either way, train + validation is the same pool of examples.
    pool = lambda d: np.sort(np.concatenate([d.x_train, d.x_val]).reshape(-1, 64), axis=0)
    np.testing.assert_array_equal(pool(digits), pool(other))


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "keras_cnas\[examples\]"'):
        load("digits")


def test_max_train_examples_keeps_a_fixed_stratified_subset():
    a = load("digits", seed=0, max_train_examples=200)
    b = load("digits", seed=3, max_train_examples=200)
    assert len(a.y_train) + len(a.y_val) == 200 and len(a.y_val) == 20
    assert len(a.y_test) == 359  # the test split is not reduced
    np.testing.assert_array_equal(np.bincount(np.concatenate([a.y_train, a.y_val])), [20] * 10)
    flat = lambda d: np.sort(np.concatenate([d.x_train, d.x_val]).reshape(200, -1), axis=0)
    np.testing.assert_array_equal(flat(a), flat(b))


def test_max_per_class_caps_train_and_test():
    d = load("digits", max_per_class=5, validation_split=0.2)
    np.testing.assert_array_equal(np.bincount(np.concatenate([d.y_train, d.y_val])), [5] * 10)
    np.testing.assert_array_equal(np.bincount(d.y_test), [5] * 10)


@pytest.mark.parametrize("kwargs, match", [
    ({"validation_split": 1.0}, r"validation_split must be a fraction in \[0, 1\); got 1.0"),
    ({"validation_split": -0.1}, r"validation_split"),
    ({"max_train_examples": 0}, r"max_train_examples must be a positive int"),
    ({"max_per_class": 2.5}, r"max_per_class must be a positive int"),
])
def test_load_rejects_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        load("digits", **kwargs)


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown dataset 'mnsit'; known datasets: "
                                       r"cifar10, digits, mnist"):
        load("mnsit")


def test_registered_loaders_are_used_by_load():
    name = "test-data-two-blobs"
    if name not in data.DATASETS:
        @data.register(name)
        def _two_blobs(data_dir, *, max_per_class, max_train_examples):
            x = np.zeros((20, 4, 4, 1), np.uint8)
            x[10:] = 255
            y = np.repeat([0, 1], 10)
            return data.RawData(x, y, None, None, class_names=["dark", "light"])

    try:
        d = load(name, validation_split=0.2)
    finally:
        data.DATASETS.remove(name)  # keep the global registry as the package ships it
    assert d.class_names == ("dark", "light") and len(d.y_val) == 4 and len(d.y_test) == 0
    assert d.x_train[d.y_train == 1].min() == 1.0
    with pytest.raises(DataError, match="has no test examples; pass x_test and y_test"):
        d.tf_dataset("test")


def test_importing_the_data_package_does_not_import_tensorflow():
    code = ("import sys, keras_cnas; before = 'tensorflow' in sys.modules; "
            "import keras_cnas.data; "
            "assert before or 'tensorflow' not in sys.modules, 'keras_cnas.data imported TF'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_summary_and_repr_are_short_and_informative(digits):
    text = digits.summary()
    assert text.startswith("Dataset 'digits': 10 classes, input_shape (8, 8, 1)")
    assert "test" in text and "0=36" in text and "flip=False, pad=1" in text
    assert repr(digits) == ("Dataset(name='digits', train=1294, validation=144, test=359, "
                            "input_shape=(8, 8, 1), num_classes=10)")


# ---------------------------------------------------------------------------------------------
# from_arrays


def test_from_arrays_scales_uint8_and_adds_a_channel_axis():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 6, 5), dtype=np.uint8)
    y = np.arange(50) % 5
    d = from_arrays(x, y, x[:10], y[:10], validation_split=0.2, class_names=list("abcde"))
    assert d.input_shape == (6, 5, 1) and d.num_classes == 5 and d.class_names[0] == "a"
    assert len(d.y_train) == 40 and len(d.y_val) == 10 and len(d.y_test) == 10
    assert np.bincount(d.y_val).tolist() == [2] * 5  # stratified
    np.testing.assert_allclose(d.x_test[..., 0], x[:10] / 255.0, rtol=1e-6)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32


def test_from_arrays_keeps_float_images_and_accepts_column_labels():
    x = np.random.default_rng(1).random((10, 4, 4, 3)).astype(np.float64)
    d = from_arrays(x, np.zeros((10, 1), np.int64) + 2, validation_split=0.0)
    np.testing.assert_allclose(d.x_train, x.astype(np.float32))
    assert d.num_classes == 3 and len(d.y_val) == 0 and d.x_val.shape == (0, 4, 4, 3)
    with pytest.raises(DataError, match="no validation examples; load it with validation_split"):
        d.tf_dataset("validation")


X = np.zeros((10, 4, 4, 1), np.uint8)
Y = np.arange(10) % 2


@pytest.mark.parametrize("args, kwargs, match", [
    ((X, Y[:9]), {}, r"y_train has 9 labels but x_train has 10 images"),
    ((X[:, :, :, 0, None, None], Y), {}, r"x_train must have shape \(N, H, W\) or \(N, H, W, C\)"),
    ((X, Y - 1), {}, r"y_train must be non-negative class ids; got minimum -1"),
    ((X, Y + 1), {"class_names": ["a", "b"]},
     r"labels go up to 2 but only 2 class_names were given"),
    ((X, np.eye(2)[Y]), {}, r"for one-hot labels pass y.argmax\(axis=1\)"),
    ((X, Y + 0.5), {}, r"y_train must hold integer class ids"),
    ((X.astype(np.float32) + 2, Y), {}, r"float images must be finite and in \[0, 1\]"),
    ((X.astype(np.int64), Y), {}, r"x_train must be uint8 .* got dtype int64"),
    ((X, Y, X), {}, r"pass both x_test and y_test, or neither; got only x_test"),
    ((X, Y, X[:, :2], Y), {}, r"x_test images have shape \(2, 4, 1\) but x_train"),
    ((X, Y, X, Y[:3]), {}, r"y_test has 3 labels but x_test has 10 images"),
    ((X, Y), {"validation_split": 0.95}, r"leaves none to train on"),
    ((X[:0], Y[:0]), {}, r"x_train holds no images"),
    ((X, Y), {"class_names": ["a", "a"]}, r"class_names must be distinct"),
    ((X, Y), {"augmentation": Augmentation(color_jitter=True)},
     r"color_jitter needs 3-channel images"),
    ((X, Y), {"augmentation": Augmentation(pad=4)}, r"pad=4 is not smaller than the image"),
])
def test_from_arrays_rejects_inconsistent_inputs_with_clear_messages(args, kwargs, match):
    with pytest.raises(DataError, match=match):
        from_arrays(*args, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"pad": -1}, r"Augmentation.pad must be a non-negative int .* got -1"),
    ({"pad": True}, r"Augmentation.pad must be a non-negative int"),
    ({"pad": 1.5}, r"Augmentation.pad"),
    ({"flip": "yes"}, r"Augmentation.flip must be True or False; got 'yes'"),
    ({"color_jitter": 1}, r"Augmentation.color_jitter must be True or False"),
])
def test_augmentation_validates_its_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**kwargs)


def test_augmentation_default_pad_is_an_eighth_of_the_height():
    assert Augmentation().resolved_pad(32) == 4 and Augmentation().resolved_pad(8) == 1
    assert Augmentation.none().is_identity(32)
    with pytest.raises(Exception):  # frozen
        Augmentation().flip = True  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# MNIST (IDX files)


def _write_idx(path: pathlib.Path, array: np.ndarray, magic: int, compress: bool = True) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_mnist(directory: pathlib.Path, compress: bool = True, n_train: int = 30,
                n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        magic = 2051 if "images" in name else 2049
        _write_idx(directory / (name + (".gz" if compress else "")), array, magic, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_generated_idx_files(tmp_path, compress):
    arrays = _fake_mnist(tmp_path, compress=compress)
    d = load("mnist", data_dir=tmp_path, validation_split=0.0)
    assert d.input_shape == (28, 28, 1) and d.num_classes == 10
    assert d.augmentation == Augmentation(flip=False, pad=None) and not d.augmentation.flip
    np.testing.assert_allclose(d.x_train[..., 0], arrays["train-images-idx3-ubyte"] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(d.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_mnist_with_a_corrupted_magic_number_names_the_file(tmp_path):
    arrays = _fake_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", arrays["t10k-images-idx3-ubyte"], 2049)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: found magic number 2049, "
                                        r"expected 2051"):
        load("mnist", data_dir=tmp_path)


def test_mnist_with_truncated_pixels_or_mismatched_counts_is_a_data_error(tmp_path):
    arrays = _fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(payload[:-100]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: found 23420 bytes of "
                                        r"pixels, expected 23520 \(30 images of 28x28\)"):
        load("mnist", data_dir=tmp_path)
    _write_idx(path, arrays["train-images-idx3-ubyte"][:20], 2051)
    with pytest.raises(DataError, match=r"holds 20 images but .*train-labels-idx1-ubyte.gz "
                                        r"holds 30 labels"):
        load("mnist", data_dir=tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read it as gzip"):
        load("mnist", data_dir=tmp_path)


def test_mnist_without_data_dir_says_which_argument_is_missing():
    with pytest.raises(DataError, match=r"'mnist' dataset needs data_dir: pass data_dir=\.\.\. "
                                        r"pointing at the directory containing "
                                        r"train-images-idx3-ubyte.gz"):
        load("mnist")


def test_mnist_missing_directory_or_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"data_dir .*nowhere does not exist"):
        load("mnist", data_dir=tmp_path / "nowhere")
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks train-images-idx3-ubyte.gz, "
                                        r"t10k-labels-idx1-ubyte.gz \(expected"):
        load("mnist", data_dir=tmp_path)


@pytest.fixture(scope="module")
def real_mnist(shared_data) -> data.Dataset:
    return load("mnist", data_dir=shared_data / "mnist")


def test_real_mnist_has_the_published_sizes_and_pixel_mean(real_mnist):
    d = real_mnist
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (54_000, 6_000, 10_000)
    assert d.input_shape == (28, 28, 1) and d.num_classes == 10
    mean = (d.x_train.sum(dtype=np.float64) + d.x_val.sum(dtype=np.float64)) / (60_000 * 784)
    assert mean == pytest.approx(0.1307, abs=1e-4)
    assert np.bincount(d.y_test).tolist()[:3] == [980, 1135, 1032]  # published test counts


def test_real_mnist_tf_dataset_batches(real_mnist):
    images, labels = next(iter(real_mnist.tf_dataset("train", batch_size=256)))
    assert tuple(images.shape) == (256, 28, 28, 1) and images.dtype.name == "float32"
    assert labels.dtype.name == "int32"


# ---------------------------------------------------------------------------------------------
# CIFAR-10: python batches


def _fake_batch(n: int, offset: int) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # the official channel-first rows
    labels = [(i + offset) % 10 for i in range(n)]
    return {b"batch_label": b"fake", b"data": planes, b"labels": labels}, images


def _fake_cifar_batches(directory: pathlib.Path, protocol: int = 2, n: int = 4) -> np.ndarray:
    directory.mkdir(parents=True, exist_ok=True)
    train = []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch, images = _fake_batch(n, i)
        train.append(images)
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return np.concatenate(train)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_generated_python_batches(tmp_path, protocol):
    images = _fake_cifar_batches(tmp_path / "cifar-10-batches-py", protocol=protocol)
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the parent works too
        d = load("cifar10", data_dir=where, validation_split=0.0)
        assert d.class_names == tuple(CIFAR_CLASSES) and d.input_shape == (32, 32, 3)
        assert len(d.y_train) == 20 and len(d.y_test) == 4
        # Channel-first planes were turned into NHWC: red stays red.
        np.testing.assert_allclose(d.x_train, images[:20] / 255.0, rtol=1e-6)
        np.testing.assert_allclose(d.x_test, images[20:] / 255.0, rtol=1e-6)
        assert d.y_train.tolist()[:5] == [0, 1, 2, 3, 1]
        assert d.augmentation == Augmentation(flip=True, pad=4, color_jitter=False)


def test_cifar10_reads_python_batches_inside_a_tarball(tmp_path):
    images = _fake_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    d = load("cifar10", data_dir=tmp_path / "cifar-10-python.tar.gz", validation_split=0.0)
    np.testing.assert_allclose(d.x_train, images[:20] / 255.0, rtol=1e-6)


def test_cifar10_missing_batch_files_are_listed(tmp_path):
    _fake_cifar_batches(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    (tmp_path / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"lacks data_batch_3, batches.meta; expected all of"):
        load("cifar10", data_dir=tmp_path)


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    _fake_cifar_batches(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match=r"test_batch: refers to builtins.print, expected only"):
        load("cifar10", data_dir=tmp_path)


def test_cifar10_batch_with_wrong_shape_is_a_data_error(tmp_path):
    _fake_cifar_batches(tmp_path)
    batch = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2: found data of uint8 \(3, 100\), "
                                        r"expected uint8 \(N, 3072\)"):
        load("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# CIFAR-10: class-folder images, on disk and as a tarball

COLOURS = {"cat": (200, 30, 30), "ant": (30, 200, 30), "bee": (30, 30, 200)}


def _fake_image_tree(root: pathlib.Path, size: int = 12, n_train: int = 4,
                     n_test: int = 2) -> None:
    tf = _tf()
    for split, n in (("train", n_train), ("test", n_test)):
        for cls, colour in COLOURS.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                # Flat colours survive JPEG almost exactly, so labels can be checked by colour.
                image = np.empty((size, size, 3), np.uint8)
                image[:] = colour
                image[0, 0] = (i * 40) % 256  # make files distinct
                if i == 0:
                    blob, ext = tf.io.encode_png(image).numpy(), "png"
                else:
                    blob, ext = tf.io.encode_jpeg(image, quality=95).numpy(), "jpg"
                (root / split / cls / f"{i:04d}.{ext}").write_bytes(blob)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / "._0001.jpg").write_bytes(b"macOS metadata")


def _check_tree_dataset(d: data.Dataset, n_train: int = 4, n_test: int = 2) -> None:
    assert d.class_names == ("ant", "bee", "cat")  # alphabetical
    assert d.input_shape == (12, 12, 3) and d.x_train.dtype == np.float32
    assert len(d.y_train) == 3 * n_train and len(d.y_test) == 3 * n_test
    for x, y in (d.arrays("train"), d.arrays("test")):
        for label, cls in enumerate(d.class_names):
            mean = x[y == label][:, 4:, 4:].mean(axis=(0, 1, 2)) * 255
            np.testing.assert_allclose(mean, COLOURS[cls], atol=4)


def test_cifar10_reads_a_generated_class_folder_tree(tmp_path):
    _fake_image_tree(tmp_path / "tree")
    _check_tree_dataset(load("cifar10", data_dir=tmp_path / "tree", validation_split=0.0))
    # A parent holding exactly one tree (a freshly extracted archive) works too.
    _check_tree_dataset(load("cifar10", data_dir=tmp_path, validation_split=0.0))


def test_cifar10_reads_the_same_tree_from_a_tarball(tmp_path):
    _fake_image_tree(tmp_path / "tree")
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree" / "train", arcname="train")
        tar.add(tmp_path / "tree" / "test", arcname="test")
    (tmp_path / "archive").mkdir()
    (tmp_path / "images.tar.gz").rename(tmp_path / "archive" / "images.tar.gz")
    from_dir = load("cifar10", data_dir=tmp_path / "tree", validation_split=0.0)
    for where in (tmp_path / "archive", tmp_path / "archive" / "images.tar.gz"):
        from_tar = load("cifar10", data_dir=where, validation_split=0.0)
        _check_tree_dataset(from_tar)
        np.testing.assert_array_equal(from_tar.x_train, from_dir.x_train)
        np.testing.assert_array_equal(from_tar.y_test, from_dir.y_test)
    # max_per_class picks the same files from the tarball as from the directory.
    capped_dir = load("cifar10", data_dir=tmp_path / "tree", max_per_class=2)
    capped_tar = load("cifar10", data_dir=tmp_path / "archive", max_per_class=2)
    np.testing.assert_array_equal(capped_dir.x_train, capped_tar.x_train)
    np.testing.assert_array_equal(capped_dir.x_val, capped_tar.x_val)
    assert len(capped_tar.y_train) + len(capped_tar.y_val) == 6


def test_cifar10_tree_with_a_different_image_size_names_the_file(tmp_path):
    _fake_image_tree(tmp_path)
    odd = _tf().io.encode_png(np.zeros((10, 12, 3), np.uint8)).numpy()
    (tmp_path / "test" / "bee" / "0000.png").write_bytes(odd)
    with pytest.raises(DataError, match=r"test/bee/0000.png: image is 12x10, expected 12x12"):
        load("cifar10", data_dir=tmp_path)


def test_cifar10_tree_with_a_corrupt_image_names_the_file(tmp_path):
    _fake_image_tree(tmp_path)
    (tmp_path / "train" / "ant" / "0002.jpg").write_bytes(b"\xff\xd8 garbage")
    with pytest.raises(DataError, match=r"train/ant/0002.jpg: cannot decode it as an image"):
        load("cifar10", data_dir=tmp_path)


def test_cifar10_tree_without_a_test_split_is_a_data_error(tmp_path):
    _fake_image_tree(tmp_path)
    for path in sorted((tmp_path / "test").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(DataError, match=r"has no images under test/<class>/"):
        load("cifar10", data_dir=tmp_path)


def test_cifar10_without_data_or_data_dir_says_what_to_pass(tmp_path):
    with pytest.raises(DataError, match=r"'cifar10' dataset needs data_dir: pass data_dir=\.\.\."):
        load("cifar10")
    with pytest.raises(DataError, match=r"data_dir .*missing does not exist"):
        load("cifar10", data_dir=tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match=r"holds no CIFAR-10 data \(found: readme.txt\); "
                                        r"expected the python batches \(data_batch_1"):
        load("cifar10", data_dir=tmp_path)
    (tmp_path / "a.tar.gz").write_bytes(b"")
    (tmp_path / "b.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"several tarballs: pass data_dir=<one of"):
        load("cifar10", data_dir=tmp_path)


def test_real_cifar10_tarball_loads_a_few_images_per_class(shared_data):
    d = load("cifar10", data_dir=shared_data / "cifar10-jpeg", max_per_class=20)
    assert d.class_names == tuple(CIFAR_CLASSES) and d.num_classes == 10
    assert d.input_shape == (32, 32, 3)
    assert len(d.y_train) + len(d.y_val) == 200 and len(d.y_test) == 200
    assert np.bincount(d.y_test).tolist() == [20] * 10
    assert 0.3 < d.x_train.mean(dtype=np.float64) < 0.6
    # Colour, not grey: the channels differ.
    assert np.abs(d.x_train[..., 0] - d.x_train[..., 2]).mean() > 0.02


@pytest.mark.slow
def test_real_cifar10_tarball_loads_in_full(shared_data):
    d = load("cifar10", data_dir=shared_data / "cifar10-jpeg")
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (45_000, 5_000, 10_000)
    mean = d.x_train.mean(axis=(0, 1, 2), dtype=np.float64)
    np.testing.assert_allclose(mean, [0.491, 0.482, 0.447], atol=0.01)


# ---------------------------------------------------------------------------------------------
# tf.data pipeline and augmentation


@pytest.fixture(scope="module")
def colour() -> data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (100, 16, 16, 3), dtype=np.uint8)
    return from_arrays(x, np.arange(100) % 4, x[:30], np.arange(30) % 4,
                       validation_split=0.2, name="colour",
                       augmentation=Augmentation(flip=True, pad=2, color_jitter=True))


def _collect(ds) -> tuple[np.ndarray, np.ndarray]:
    batches = list(ds.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@pytest.mark.parametrize("split, expected", [
    ("train", [32, 32, 16]), ("validation", [20]), ("test", [30]),
    ("train+validation", [32, 32, 32, 4])])
def test_tf_dataset_yields_batches_of_the_right_shapes_and_dtypes(colour, split, expected):
    ds = colour.tf_dataset(split, batch_size=32)
    sizes = []
    for images, labels in ds:
        assert images.dtype.name == "float32" and labels.dtype.name == "int32"
        assert tuple(images.shape[1:]) == (16, 16, 3) and labels.shape == images.shape[:1]
        sizes.append(int(images.shape[0]))
    assert sizes == expected


def test_evaluation_splits_are_neither_shuffled_nor_augmented_by_default(colour):
    x, y = _collect(colour.tf_dataset("validation", batch_size=8))
    np.testing.assert_array_equal(x, colour.x_val)
    np.testing.assert_array_equal(y, colour.y_val)


def test_training_split_is_a_shuffled_augmented_permutation(colour):
    x, y = _collect(colour.tf_dataset("train", batch_size=16))
    assert x.shape == colour.x_train.shape and 0.0 <= x.min() and x.max() <= 1.0
    assert sorted(y.tolist()) == sorted(colour.y_train.tolist())
    assert not np.array_equal(y, colour.y_train)  # shuffled
    assert not np.array_equal(np.sort(x, axis=None), np.sort(colour.x_train, axis=None))
    plain, _ = _collect(colour.tf_dataset("train", batch_size=16, augment=False, shuffle=False))
    np.testing.assert_array_equal(plain, colour.x_train)


def test_augmentation_is_deterministic_for_a_seed_and_fresh_each_epoch(colour):
    def two_epochs(seed):
        ds = colour.tf_dataset("train", batch_size=32, seed=seed)
        return _collect(ds), _collect(ds)

    (a1, la1), (a2, la2) = two_epochs(5)
    (b1, lb1), (b2, lb2) = two_epochs(5)
    (c1, _), _ = two_epochs(6)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(la1, lb1)
    np.testing.assert_array_equal(a2, b2)  # the second epoch is reproducible too
    np.testing.assert_array_equal(la2, lb2)
    assert not np.array_equal(a1, a2)  # but differs from the first
    assert not np.array_equal(a1, c1)  # and another seed differs


def test_flip_mirrors_some_images_and_keeps_the_others():
    x = np.random.default_rng(0).random((64, 6, 6, 1), dtype=np.float32)
    out = augment_images(x, Augmentation(flip=True, pad=0), seed=(1, 2)).numpy()
    same = np.all(out == x, axis=(1, 2, 3))
    mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()


def test_pad_and_crop_translates_by_at_most_pad_pixels():
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32) + 0.01
    pad = 2
    out = augment_images(x, Augmentation(pad=pad), seed=(3, 4)).numpy()
    assert out.shape == x.shape
    padded = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    shifts = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
        assert matches, f"image {i} is not a crop of its padded original"
        shifts.add(matches[0])
    assert len(shifts) > 3  # offsets differ between images


def test_color_jitter_changes_colour_images_within_the_unit_range(colour):
    x = colour.x_train[:16]
    jitter = augment_images(x, Augmentation(pad=0, color_jitter=True), seed=(0, 0)).numpy()
    assert jitter.shape == x.shape and 0.0 <= jitter.min() and jitter.max() <= 1.0
    assert not np.allclose(jitter, x)
    again = augment_images(x, Augmentation(pad=0, color_jitter=True), seed=(0, 0)).numpy()
    np.testing.assert_array_equal(jitter, again)


def test_digits_augmentation_translates_but_never_flips(digits):
    assert digits.augmentation.flip is False and digits.augmentation.color_jitter is False
    images, labels = next(iter(digits.tf_dataset("train", batch_size=64)))
    assert tuple(images.shape) == (64, 8, 8, 1)
    x, _ = _collect(digits.tf_dataset("train", batch_size=512, shuffle=False))
    assert not np.array_equal(x, digits.x_train)  # augmentation changed pixels


@pytest.mark.parametrize("kwargs, error, match", [
    ({"split": "val"}, ValueError, r"split must be one of train, validation, test, "
                                   r"train\+validation; got 'val'"),
    ({"batch_size": 0}, ValueError, r"batch_size must be a positive int; got 0"),
    ({"seed": -1}, ValueError, r"seed must be a non-negative int"),
])
def test_tf_dataset_rejects_bad_arguments(digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        digits.tf_dataset(**kwargs)


@pytest.mark.parametrize("name", data.DATASETS.names())
def test_every_registered_dataset_fails_clearly_or_loads_without_files(name, tmp_path):
    """New registry entries get this check for free: no files -> a DataError, never a crash."""
    try:
        d = load(name, data_dir=None if name == "digits" else tmp_path, max_per_class=2)
    except DataError as e:
        assert str(tmp_path) in str(e) or "data_dir" in str(e)
        return
    assert isinstance(d, data.Dataset) and d.num_classes >= 2
