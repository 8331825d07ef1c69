"""Every data source, every bad-input case, and the replayable tf.data stream."""

import gzip

import numpy as np
import pytest

from genmnist import data
from genmnist.data import idx_bytes
from genmnist.errors import UserError

from conftest import fake_digits, write_idx_dir


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_are_read_gzipped_or_not(tmp_path, compress):
    images, labels = write_idx_dir(tmp_path, n=50, compress=compress)
    split = data.load_mnist(str(tmp_path))
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)


@pytest.mark.parametrize("header", [True, False])
def test_legacy_csv_with_or_without_header(tmp_path, header):
    images, labels = fake_digits(5)
    rows = [",".join(map(str, [label, *img.ravel()])) for img, label in zip(images, labels)]
    if header:
        rows.insert(0, "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)))
    (tmp_path / "mnist_train.csv").write_text("\n".join(rows) + "\n")
    split = data.load_mnist(str(tmp_path))
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)


def _write(path, payload, compress=True):
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("case, match", [
    ("missing_dir", "does not exist"),
    ("dir_is_a_file", "is a file, not a directory"),
    ("empty_dir", "no MNIST train data"),
    ("truncated", "truncated"),
    ("header_only", "truncated"),
    ("wrong_magic", "magic number 2049"),
    ("wrong_shape", "32x32"),
    ("not_gzip", "damaged"),
    ("damaged_deflate", "damaged"),
    ("labels_mismatch", "labels but"),
    ("csv_short_row", "line 2 has 10 values, expected 785"),
    ("csv_not_integer", "not an integer"),
    ("csv_out_of_range", "outside 0..255"),
])
def test_bad_inputs_raise_a_one_line_error_naming_the_file(tmp_path, case, match):
    images, labels = fake_digits(4)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    good = idx_bytes(images)
    if case == "truncated":
        _write(target, good[:-10])
    elif case == "header_only":
        _write(target, good[:6])
    elif case == "wrong_magic":
        _write(target, idx_bytes(labels))
    elif case == "wrong_shape":
        _write(target, idx_bytes(np.zeros((2, 32, 32), np.uint8)))
    elif case == "not_gzip":
        target.write_bytes(b"plain bytes, not gzip")
    elif case == "damaged_deflate":  # a bit error inside the compressed stream: zlib, not gzip, notices
        damaged = bytearray(gzip.compress(good))
        damaged[20:28] = bytes(b ^ 0xFF for b in damaged[20:28])
        target.write_bytes(bytes(damaged))
    elif case == "dir_is_a_file":
        _write(target, good)
    elif case == "labels_mismatch":
        _write(target, good)
        _write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(labels[:3]))
    elif case.startswith("csv"):
        row = {"csv_short_row": "1," + ",".join(["0"] * 9),
               "csv_not_integer": "1," + ",".join(["0.5"] * 784),
               "csv_out_of_range": "1," + ",".join(["256"] * 784)}[case]
        (tmp_path / "mnist_train.csv").write_text("1," + ",".join(["0"] * 784) + "\n" + row + "\n")
    directory = {"missing_dir": str(tmp_path / "nowhere"), "dir_is_a_file": str(target)}.get(case, str(tmp_path))
    with pytest.raises(UserError, match=match) as err:
        data.load_mnist(directory)
    assert "\n" not in str(err.value)
    if case not in ("missing_dir", "empty_dir", "dir_is_a_file"):
        assert str(tmp_path) in str(err.value)


def test_tfds_failure_offline_becomes_a_user_error(monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve storage.googleapis.com\nmore detail")
    monkeypatch.setattr(tfds, "load", offline)
    monkeypatch.setattr(data, "_check_reachable", lambda: None)  # the network answered; the download failed
    with pytest.raises(UserError, match="--data-dir DIR") as err:
        data.load_mnist(None)
    assert "\n" not in str(err.value) and "Failed to resolve" in str(err.value)


def test_cli_bad_data_dir_exits_2_with_one_line_and_no_traceback(tmp_path, capsys):
    """In this process: a command's own process printing nothing else is test_cli_startup's."""
    from genmnist import train
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--steps", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("genmnist.train: error:")]
    assert len(error_lines) == 1 and "missing" in error_lines[0]


def test_batches_are_a_pure_function_of_seed_and_batch_index():
    images, _ = fake_digits(40)
    whole = [b.numpy() for b in data.batches(images, 16, (-1.0, 1.0), seed=3).take(7)]
    resumed = [b.numpy() for b in data.batches(images, 16, (-1.0, 1.0), seed=3, first_batch=4).take(3)]
    for a, b in zip(whole[4:], resumed):
        np.testing.assert_array_equal(a, b)
    other_seed = next(iter(data.batches(images, 16, (-1.0, 1.0), seed=4))).numpy()
    assert not np.array_equal(whole[0], other_seed)
    assert whole[0].shape == (16, 28, 28, 1)
    assert whole[0].min() >= -1.0 and whole[0].max() <= 1.0


def test_each_epoch_visits_every_image_once():
    images = np.arange(32, dtype=np.uint8).reshape(32, 1, 1).repeat(28, 1).repeat(28, 2)
    epoch = np.concatenate([b.numpy()[:, 0, 0, 0] for b in data.batches(images, 8, (0.0, 255.0), 0).take(4)])
    assert sorted(np.rint(epoch).astype(int)) == list(range(32))


def test_scaling_matches_each_preset_range():
    pixels = np.array([[0, 255]], np.uint8)
    np.testing.assert_allclose(data.scale_images(pixels, (0.0, 1.0)), [[0.0, 1.0]])
    np.testing.assert_allclose(data.scale_images(pixels, (-1.0, 1.0)), [[-1.0, 1.0]])


def test_legacy_train_on_a_damaged_gzip_is_one_line(tmp_path, capsys):
    from legacy_v1 import train as legacy_train

    images, _ = fake_digits(4)
    damaged = bytearray(gzip.compress(idx_bytes(images)))
    damaged[20:28] = bytes(b ^ 0xFF for b in damaged[20:28])
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bytes(damaged))
    with pytest.raises(SystemExit) as exit_info:
        legacy_train.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("legacy_v1.train: error:") and "\n" not in err
    assert "damaged" in err


def test_real_mnist_is_found_through_one_variable(monkeypatch, tmp_path):
    from genmnist.data import MNIST_ENV, SHARED_MNIST, real_mnist_dir
    monkeypatch.setenv(MNIST_ENV, str(tmp_path))
    assert real_mnist_dir() == str(tmp_path)
    for unset in ("", "synthetic"):  # the notebooks' stand-in is not real MNIST
        monkeypatch.setenv(MNIST_ENV, unset)
        assert real_mnist_dir() == SHARED_MNIST
