"""``python -m legacy_v1.train``'s command line: flags, one-line errors, MNIST from genmnist's loaders.

The legacy training loop is ``legacy_v1.train``'s; this glue, which uses genmnist's flag types,
errors and data loaders, lives here so that ``legacy_v1`` holds the legacy code alone.
``legacy_v1/train.py`` keeps the entry point and hands over to :func:`main`.
"""

import os

import numpy as np

from genmnist import argtypes, import_tensorflow
from genmnist.errors import UserError
from parity.legacy_predict import one_line_errors

# legacy_v1's modules (TensorFlow among them) are imported after the flags are parsed: --help answers at once.


def parse_args(argv=None):
    p = argtypes.Parser(
        prog="python -m legacy_v1.train",
        description="Train the legacy TF1 GAN (tf.compat.v1 graph, legacy bugs kept) on MNIST. Prints both "
                    "losses and writes out1.bmp..out3.bmp at the legacy display steps, a TensorBoard log and "
                    "a tf.compat.v1 Saver checkpoint (prefix OUT/model) at the end.",
        formatter_class=argtypes.DefaultsFormatter)
    p.add_argument("--data-dir", default=None,
                   help="directory with train-images-idx3-ubyte[.gz] or the legacy mnist_train.csv; "
                        "default: tensorflow-datasets")
    p.add_argument("--steps", type=argtypes.positive_int, default=10000,
                   help="training iterations after the 30 D-only warm-up steps (the legacy train_epochs)")
    p.add_argument("--seed", type=argtypes.seed, default=0,
                   help="seeds the TF1 graph's initialisers and the NumPy RNG (row shuffle, batches, z)")
    p.add_argument("--out", required=True, help="output directory for images, logs and the checkpoint")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=128, help="images per batch (legacy: 128)")
    p.add_argument("--learning-rate", type=argtypes.positive_float, default=0.0005,
                   help="Adam learning rate for D and G (legacy: 0.0005)")
    p.add_argument("--init-from", default=None, metavar="LEGACY_CKPT",
                   help="start from the network weights in this name-based checkpoint (directory or prefix, "
                        "e.g. one written by genmnist.convert --to-legacy) instead of the seeded initialisers; "
                        "lets v1 and genmnist train from identical weights")
    return p.parse_args(argv)


def train(args):
    from genmnist.data import load_mnist
    from legacy_v1 import train as legacy
    from legacy_v1.batching import LegacyBatcher, legacy_pixels
    from legacy_v1.model import GANModel
    from legacy_v1.predict import resolve_checkpoint, restore_network

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a file, not a directory; choose another --out")
    init_from = resolve_checkpoint(args.init_from) if args.init_from else None
    rng = np.random.default_rng(args.seed)
    pixels = legacy_pixels(load_mnist(args.data_dir, "train").images, rng)
    if len(pixels) < args.batch_size:
        raise UserError(f"only {len(pixels)} training images for a batch of {args.batch_size}; lower --batch-size")
    batcher = LegacyBatcher(pixels, args.batch_size, rng)
    model = GANModel(learning_rate=args.learning_rate, seed=args.seed)
    with model.session() as sess:
        sess.run(model.init)
        if init_from:
            restore_network(model, sess, init_from)
        try:  # only once the inputs proved good does anything go into --out
            os.makedirs(args.out, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot write into {args.out} ({err.strerror}); choose a writable --out") from None
        path = legacy.train(model, sess, batcher, rng, args.steps, args.out)
    print(f"saved {path}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow()
    with one_line_errors("legacy_v1.train"):
        return train(args)
