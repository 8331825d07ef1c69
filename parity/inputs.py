"""The real batches both sides see: MNIST from ``--data-dir``, or seeded synthetic stand-ins."""

import numpy as np


def synthetic_images(rng, count):
    """Digit-sized uint8 blobs in a 20x20 box with black borders, like MNIST's framing."""
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = rng.integers(0, 256, (count, 20, 20)) * (rng.random((count, 20, 20)) < 0.2)
    return images


def real_pixels(data_dir, count, rng):
    """``count`` images as legacy float32 [count, 784] in [0, 1], shuffled once like the legacy loader."""
    if data_dir is None:
        images = synthetic_images(rng, count)
    else:
        from genmnist.data import load_mnist
        images = load_mnist(data_dir, "train").images
        images = images[rng.permutation(len(images))[:count]]
    return (images.reshape(len(images), 784).astype(np.float64) / 255.0).astype(np.float32)
