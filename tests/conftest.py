"""Shared fixtures: tiny MNIST-format data written to tmp dirs, and the real data when present."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

# One oneDNN setting for the whole test process and every subprocess it starts.
# The parity tests need oneDNN off (set before TF is imported), and the environment
# is inherited by the CLI subprocesses, whose results are compared bit for bit with
# in-process runs: both sides must use the same kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import genmnist  # noqa: F401,E402  (sets TensorFlow's log level before TF is imported)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts several TensorFlow processes (about a minute)")


REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def fake_digits(n, seed=0):
    """n uint8 28x28 images (a bright bar whose position encodes the label) and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[4 + 2 * label: 7 + 2 * label, 6:22] = 255
    return images, labels


def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory, n=256, seed=0, compress=True, prefix="train"):
    images, labels = fake_digits(n, seed)
    os.makedirs(directory, exist_ok=True)
    for name, array, magic in ((f"{prefix}-images-idx3-ubyte", images, 2051),
                               (f"{prefix}-labels-idx1-ubyte", labels, 2049)):
        data = idx_bytes(array, magic)
        if compress:
            with gzip.open(os.path.join(directory, name + ".gz"), "wb") as f:
                f.write(data)
        else:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
    return images, labels


@pytest.fixture
def idx_dir(tmp_path):
    directory = tmp_path / "mnist"
    write_idx_dir(directory)
    return str(directory)


@pytest.fixture
def real_mnist_dir():
    if not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {REAL_MNIST}")
    return str(REAL_MNIST)
