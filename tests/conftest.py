"""Shared fixtures: tiny MNIST-format data written to tmp dirs, and the real data when present."""

import os
from pathlib import Path

import numpy as np
import pytest

# One oneDNN setting for the whole test process and every subprocess it starts.
# The parity tests need oneDNN off (set before TF is imported), and the environment
# is inherited by the CLI subprocesses, whose results are compared bit for bit with
# in-process runs: both sides must use the same kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import genmnist  # noqa: F401,E402  (sets TensorFlow's log level before TF is imported)
from genmnist import data  # noqa: E402

REAL_MNIST = Path(data.real_mnist_dir())

# The longest tests that share no module fixture, longest first (a full run's --durations).  pytest-xdist
# hands out xdist_group groups first (the largest first), then single tests in collection order; these
# go to the front of that order so the workers end on short tests and finish together.
LONGEST_FIRST = (
    "tests/test_multiworker.py::test_two_workers_equal_one_only_the_chief_writes_and_a_lost_worker_resumes",
    "tests/test_train_cli.py::test_mirrored_on_two_logical_cpus_matches_one_device",
    "tests/test_train_cli.py::test_wgan_gp_resume_restores_the_penalty_rng",
    "tests/test_bench_search.py::test_search_runs_the_queue_once_and_extends_a_run",
    "tests/test_precision.py::test_run_records_its_precision_and_resume_keeps_it",
    "tests/test_train_cli.py::test_mirrored_cli_run_writes_one_set_of_outputs_and_trains_as_one_device",
    "tests/test_notebooks.py::test_notebook_runs_in_quick_mode",
    "tests/test_train_cli.py::test_eval_every_writes_metrics_to_csv",
    "tests/test_train_cli.py::test_sigint_saves_a_checkpoint_and_exits_130",
)


def pytest_configure(config):
    """In each process that runs tests: one inter-op thread, before TensorFlow starts.

    ``genmnist.train`` pins it for gradient-penalty runs (the default preset's R1), which an in-process
    call cannot do once TensorFlow runs: without it, in-process resume tests of the default preset
    differed bit for bit from their uninterrupted runs with a training job beside the suite.  The
    xdist controller runs no test and never loads TensorFlow."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(1)


def pytest_collection_modifyitems(items):
    rank = {nodeid: i for i, nodeid in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("[")[0], len(rank)))  # stable: the rest keep their order


def fake_digits(n, seed=0):
    """n uint8 28x28 images (a bright bar whose position encodes the label) and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[4 + 2 * label: 7 + 2 * label, 6:22] = 255
    return images, labels


def write_idx_dir(directory, n=256, seed=0, compress=True, prefix="train"):
    images, labels = fake_digits(n, seed)
    data.write_split(str(directory), {"train": "train", "t10k": "test"}[prefix], images, labels, compress)
    return images, labels


# What a tiny test run passes besides its data, directory and length: batch 16, and 2 of the legacy D-only
# warm-up steps instead of the presets' 30 (those cost about as much CPU as the rest of a tiny default run).
TINY = ("--batch-size", "16", "--warmup-d-steps", "2")


def train_tiny(out, data_dir, *extra, steps):
    """genmnist.train in this process on tiny data (:data:`TINY`): a log line every 2 and a checkpoint every 4
    iterations."""
    from genmnist import train
    return train.main(["--data-dir", data_dir, "--out", str(out), "--steps", str(steps), *TINY,
                       "--log-every", "2", "--checkpoint-every", "4", *extra])


def make_tiny_run(tmp_path_factory, train_run):
    """A run trained by ``train_run(out, data_dir)`` on 256 fake digits: (its directory, the data's)."""
    data_dir = tmp_path_factory.mktemp("data")
    write_idx_dir(data_dir)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert train_run(out, str(data_dir)) == 0
    return out, str(data_dir)


@pytest.fixture
def idx_dir(tmp_path):
    directory = tmp_path / "mnist"
    write_idx_dir(directory)
    return str(directory)


@pytest.fixture
def real_mnist_dir():
    if not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {REAL_MNIST}: set {data.MNIST_ENV}=DIR, the directory holding "
                    "train-images-idx3-ubyte.gz and the other three IDX files")
    return str(REAL_MNIST)
