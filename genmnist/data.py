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
    try:
        return _read_csv(path)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text CSV (it holds bytes that are not UTF-8); download it again") from None


def _read_csv(path):
    images, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
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


TFDS_HOST = ("storage.googleapis.com", 443)  # where tensorflow-datasets gets MNIST from
REACH_TIMEOUT_S = 10


def tfds_home():
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _first_words(text, limit=160):
    """``text``'s first line, cut at a word boundary near ``limit``."""
    line = (text.splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def _check_reachable():
    """Offline, tensorflow-datasets retries for minutes and ignores Ctrl-C: ask the network first,
    within seconds (through the HTTPS proxy when one is set), interruptibly."""
    import socket
    import urllib.parse
    import urllib.request

    proxy = urllib.request.getproxies().get("https")
    host = (urllib.parse.urlsplit(proxy).hostname, urllib.parse.urlsplit(proxy).port or 80) if proxy else TFDS_HOST
    try:
        socket.create_connection(host, timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        raise UserError(f"no --data-dir and {host[0]} cannot be reached to download MNIST "
                        f"({_first_words(str(err) or type(err).__name__, 60)}); offline? pass --data-dir DIR "
                        "with train-images-idx3-ubyte[.gz] or mnist_train.csv") from None


def _load_tfds(split):
    import sys

    if not os.path.isdir(os.path.join(tfds_home(), "mnist")):
        _check_reachable()
    import tensorflow_datasets as tfds

    print("no --data-dir: getting MNIST through tensorflow-datasets (pass --data-dir DIR to read local files)",
          file=sys.stderr)
    try:
        data = tfds.as_numpy(tfds.load("mnist", split=split, batch_size=-1))
    except Exception as err:  # tfds raises many kinds; all mean "could not get the data"
        reason = _first_words(str(err) or type(err).__name__)
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


# ------------------------------------------------------------------ writing IDX files and finding MNIST

MNIST_ENV = "GENMNIST_DATA"  # DIR holding the MNIST IDX files, or "synthetic" (the notebooks' stand-in)
SHARED_MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "shared", "data", "mnist")  # ../shared/data/mnist next to the repository


def real_mnist_dir():
    """Where the tests, benchmarks and notebooks look for real MNIST: $GENMNIST_DATA, else ../shared/data/mnist."""
    choice = os.environ.get(MNIST_ENV, "")
    return choice if choice and choice != "synthetic" else SHARED_MNIST


def idx_bytes(array):
    """uint8 images [n, 28, 28] or labels [n] encoded as an IDX file: what :func:`read_idx` reads."""
    array = np.ascontiguousarray(array, np.uint8)
    magic = _IDX_IMAGE_MAGIC if array.ndim == 3 else _IDX_LABEL_MAGIC
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def write_idx(path, array):
    """:func:`idx_bytes` to ``path``, gzipped when it ends in .gz."""
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(idx_bytes(array))


def write_split(directory, split, images, labels, compress=True):
    """One split as the IDX pair :func:`load_mnist` finds in ``directory``."""
    os.makedirs(directory, exist_ok=True)
    prefix, ext = _IDX_PREFIX[split], ".gz" if compress else ""
    write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{ext}"), images)
    write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{ext}"), labels)


def _has_idx(directory):
    return _find(str(directory), ["train-images-idx3-ubyte"]) is not None


def find_mnist(work_dir):
    """(directory of MNIST IDX files, description) for the notebooks.

    $GENMNIST_DATA=DIR or =synthetic overrides the search; otherwise ../shared/data/mnist,
    then a local tensorflow-datasets copy (written out as IDX files under ``work_dir``), then
    a loudly labelled synthetic stand-in under ``work_dir``, so the notebooks run anywhere.
    """
    choice = os.environ.get(MNIST_ENV, "")
    if choice and choice != "synthetic":
        return choice, f"MNIST from ${MNIST_ENV} ({choice})"
    if not choice:
        if _has_idx(SHARED_MNIST):
            return SHARED_MNIST, f"real MNIST from {SHARED_MNIST}"
        if os.path.isdir(os.path.join(tfds_home(), "mnist")):
            directory = os.path.join(work_dir, "mnist-from-tfds")  # one directory of IDX files serves every tool
            for split in ("train", "test"):
                write_split(directory, split, *load_mnist(None, split), compress=False)
            return directory, f"real MNIST from the tensorflow-datasets copy in {tfds_home()}"
    directory = os.path.join(work_dir, "synthetic-mnist")
    for split, n, seed in (("train", 6000, 0), ("test", 1000, 1)):
        write_split(directory, split, *synthetic_digits(n, seed), compress=False)
    reason = ("GENMNIST_DATA=synthetic" if choice else
              "no MNIST found in ../shared/data/mnist or a tensorflow-datasets copy")
    return directory, (f"SYNTHETIC FALLBACK, NOT MNIST ({reason}): 7000 typed digits stand in; every number "
                       "and picture below is about this stand-in")


def synthetic_digits(n, seed):
    """Digits typed in OpenCV's Hershey fonts, jittered, then framed like MNIST (20x20 box, centred by mass)."""
    import cv2
    rng = np.random.default_rng(seed)
    fonts = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
             cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX]
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        canvas = np.zeros((64, 64), np.uint8)
        cv2.putText(canvas, str(label), (14, 50), fonts[rng.integers(len(fonts))], rng.uniform(1.4, 1.9),
                    255, int(rng.integers(3, 7)), cv2.LINE_AA)
        warp = cv2.getRotationMatrix2D((32, 32), rng.uniform(-15, 15), 1.0)
        warp[0, 1] += rng.uniform(-0.3, 0.3)  # shear, like a slanted hand
        canvas = cv2.warpAffine(canvas, warp, (64, 64))
        ys, xs = np.nonzero(canvas)
        digit = canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        scale = 20 / max(digit.shape)
        digit = cv2.resize(digit, (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        cy, cx = (np.array(np.nonzero(digit)) * digit[np.nonzero(digit)]).sum(1) / digit.sum()
        top, left = int(round(14 - cy)), int(round(14 - cx))
        top, left = min(max(top, 0), 28 - digit.shape[0]), min(max(left, 0), 28 - digit.shape[1])
        images[i, top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return images, labels
