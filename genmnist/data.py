"""MNIST from tensorflow-datasets, IDX files or the legacy CSV, and the tf.data pipeline.

``load_mnist`` always returns uint8 images [N, 28, 28] (and labels when the
source has them).  Every way a file can be wrong raises :class:`UserError`
naming the file and the fix, so the CLIs can end with one line, not a traceback.

``batches`` is a pure function of (seed, first batch index): batch k of a run
is the same whether the run was interrupted or not, which is what makes
``--resume`` exact without checkpointing a shuffle buffer.
"""

import collections
import csv
import gzip
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from genmnist.errors import UserError

MnistSplit = collections.namedtuple("MnistSplit", ["images", "labels"])

_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_IMAGE_MAGIC = 2051
_IDX_LABEL_MAGIC = 2049
_FIX = "download the IDX files from the MNIST homepage or pass --data-dir DIR holding them"


def load_mnist(data_dir=None, split="train"):
    """Load one split. ``data_dir=None`` means tensorflow-datasets (downloads on first use)."""
    if split not in _IDX_PREFIX:
        raise UserError(f"unknown split {split!r}; use 'train' or 'test'")
    if data_dir is None:
        return _load_tfds(split)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"--data-dir {data_dir} is a file, not a directory; pass the directory that holds it")
    if not os.path.isdir(data_dir):
        raise UserError(f"data directory {data_dir} does not exist; {_FIX}")
    prefix = _IDX_PREFIX[split]
    images_path = _find(data_dir, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"])
    if images_path:
        labels_path = _find(data_dir, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"])
        images = read_idx(images_path, _IDX_IMAGE_MAGIC)
        labels = read_idx(labels_path, _IDX_LABEL_MAGIC) if labels_path else None
        if labels is not None and len(labels) != len(images):
            raise UserError(f"{labels_path} has {len(labels)} labels but {images_path} has "
                            f"{len(images)} images; re-download both files")
        return MnistSplit(images, labels)
    csv_path = _find(data_dir, [f"mnist_{split}.csv"], compressed=False)
    if csv_path:
        return read_csv(csv_path)
    raise UserError(
        f"no MNIST {split} data in {data_dir}: expected {prefix}-images-idx3-ubyte[.gz] "
        f"or mnist_{split}.csv; {_FIX}")


def _find(directory, names, compressed=True):
    for name in names:
        for candidate in (name, name + ".gz") if compressed else (name,):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    return None


def read_idx(path, expected_magic):
    """Read an IDX file (gzipped or not): images [N, 28, 28] or labels [N], uint8."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: a damaged deflate stream
        raise UserError(f"cannot read {path} ({err}); the file is damaged, download it again") from None
    if len(data) < 8:
        raise UserError(f"{path} is truncated ({len(data)} bytes); download it again")
    magic, count = struct.unpack(">II", data[:8])
    if magic != expected_magic:
        kind = "images (idx3)" if expected_magic == _IDX_IMAGE_MAGIC else "labels (idx1)"
        raise UserError(f"{path} has magic number {magic}, expected {expected_magic} for MNIST "
                        f"{kind}; it is not the right IDX file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated inside its header; download it again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and dims[1:] != (28, 28):
        raise UserError(f"{path} holds {dims[1]}x{dims[2]} images, expected 28x28")
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise UserError(f"{path} is truncated: header promises {expected} bytes of data, "
                        f"found {len(data) - header}; download it again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_csv(path):
    """The legacy CSV: one row per image, label then 784 pixels 0..255, header row optional."""
    images, labels = [], []
    with open(path, newline="") as f:
        for line_number, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if line_number == 1 and not row[0].strip().lstrip("-").isdigit():
                continue  # header row
            if len(row) != 785:
                raise UserError(f"{path} line {line_number} has {len(row)} values, expected 785 "
                                "(label + 28*28 pixels)")
            try:
                values = [int(v) for v in row]
            except ValueError:
                raise UserError(f"{path} line {line_number} has a value that is not an integer") from None
            if min(values) < 0 or max(values) > 255:
                raise UserError(f"{path} line {line_number} has a value outside 0..255")
            labels.append(values[0])
            images.append(values[1:])
    if not images:
        raise UserError(f"{path} holds no images")
    return MnistSplit(np.asarray(images, np.uint8).reshape(-1, 28, 28), np.asarray(labels, np.uint8))


def _load_tfds(split):
    import sys

    import tensorflow_datasets as tfds

    print("no --data-dir: getting MNIST through tensorflow-datasets (offline, it retries for a few "
          "minutes before giving up; pass --data-dir DIR instead)", file=sys.stderr)
    try:
        data = tfds.as_numpy(tfds.load("mnist", split=split, batch_size=-1))
    except Exception as err:  # tfds raises many kinds; all mean "could not get the data"
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(f"could not get MNIST through tensorflow-datasets ({reason}); "
                        "offline? pass --data-dir DIR with train-images-idx3-ubyte[.gz] "
                        "or mnist_train.csv") from None
    return MnistSplit(data["image"][..., 0].astype(np.uint8), data["label"].astype(np.uint8))


def scale_images(images, pixel_range):
    """uint8 0..255 -> float32 in ``pixel_range`` (legacy: /255 -> [0, 1])."""
    low, high = pixel_range
    return tf.cast(images, tf.float32) / 255.0 * (high - low) + low


def batches(images, batch_size, pixel_range, seed, first_batch=0):
    """An endless tf.data stream of shuffled float batches [b, 28, 28, 1], starting at batch index ``first_batch``.

    Each epoch is a stateless permutation keyed by (seed, epoch); batches run
    across epoch boundaries so no image is skipped.
    """
    num_images = len(images)
    if num_images < batch_size:
        raise UserError(f"only {num_images} training images for a batch of {batch_size}; "
                        "lower --batch-size")
    pixels = tf.constant(images[..., None])
    first_example = first_batch * batch_size

    def epoch_order(epoch):
        return tf.data.Dataset.from_tensor_slices(tf.random.experimental.stateless_shuffle(
            tf.range(num_images, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), epoch])))

    start_epoch = first_example // num_images
    indices = (tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_order)
               .skip(first_example - start_epoch * num_images)
               .batch(batch_size, drop_remainder=True))
    return (indices.map(lambda idx: scale_images(tf.gather(pixels, idx), pixel_range),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))
