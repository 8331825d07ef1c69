"""The legacy ``_next_batch`` helper, quirks included, with a seeded NumPy RNG.

Consecutive slices of ``batch_size``; when the next slice would run past the
end, a shuffled *copy* supplies that one batch and the index restarts at
``batch_size``.  The copy is then dropped, so later batches come again from the
array in its original order: only the first batch after each wrap is drawn
from a fresh permutation, and the tail that did not fill a batch is skipped.
"""

import numpy as np

from legacy_v1 import Z_DIM


class LegacyBatcher:
    """Stateful ``next_batch()`` over ``images`` (first axis = examples)."""

    def __init__(self, images, batch_size, rng):
        if batch_size > len(images):
            raise ValueError(f"batch size {batch_size} exceeds the {len(images)} examples")
        self.images = images
        self.batch_size = batch_size
        self.rng = rng
        self.index = 0

    def next_batch(self):
        start, end = self.index, self.index + self.batch_size
        if end > len(self.images):
            perm = np.arange(len(self.images))
            self.rng.shuffle(perm)
            shuffled = self.images[perm]  # local: lost after this call, as in the legacy code
            self.index = self.batch_size
            return shuffled[:self.batch_size]
        self.index = end
        return self.images[start:end]


def legacy_pixels(images, rng):
    """uint8 [N, 28, 28] -> float32 [N, 784] in [0, 1], rows shuffled once, as the legacy loader did."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    rng.shuffle(flat)
    return (flat / 255.0).astype(np.float32)


def legacy_z(rng, batch_size, z_dim=Z_DIM):
    """z ~ N(0, 1) drawn in float64 as ``np.random.normal`` did, fed as float32."""
    return rng.normal(0.0, 1.0, size=(batch_size, z_dim)).astype(np.float32)
