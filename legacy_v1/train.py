"""Train the legacy GAN as the legacy script did: ``python -m legacy_v1.train --help``.

30 D-only warm-up steps, then per iteration one D step and one G step on the
same z; losses printed and ``out1.bmp``..``out3.bmp`` written at the legacy
DISPLAY_STEP cadence and at the last iteration; a name-based Saver checkpoint
at the end.  Windows paths, scipy.misc and tf.contrib are gone; nothing else is
fixed.  Two additions for parity work: ``--init-from`` and ``losses.csv``.
"""

import datetime
import os
import sys

import cv2
import numpy as np

from genmnist import argtypes, import_tensorflow
from genmnist.errors import UserError, exit_on_user_error

WARMUP_D_STEPS = 30
CHECKPOINT_NAME = "model"
LOSSES_CSV = "losses.csv"  # not in the legacy script: both losses at every iteration, for parity curves


def legacy_uint8(images):
    """``clip(x * 255, 0, 255)`` as uint8, [n, 28, 28] (the generator's tanh output is not remapped)."""
    return np.clip(np.asarray(images).reshape(-1, 28, 28) * 255, 0, 255).astype(np.uint8)


def display_steps(steps):
    """The iterations the legacy loop printed at: 0, 10, .., 100, 200, .., 1000, 2000, .. and the last."""
    shown, display_step = [], 10
    for i in range(steps):
        if i == display_step * 10:
            display_step *= 10
        if i % display_step == 0 or i == steps - 1:
            shown.append(i)
    return shown


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
    import tensorflow as tf  # after argparse so --help is fast

    from genmnist.data import load_mnist
    from legacy_v1.batching import LegacyBatcher, legacy_pixels, legacy_z
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
    log_dir = os.path.join(args.out, "logs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    shown = set(display_steps(args.steps))
    with model.session() as sess:
        sess.run(model.init)
        if init_from:
            restore_network(model, sess, init_from)
        try:  # only once the inputs proved good does anything go into --out
            os.makedirs(args.out, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot write into {args.out} ({err.strerror}); choose a writable --out") from None
        writer = tf.compat.v1.summary.FileWriter(log_dir, model.graph)
        loss_log = open(os.path.join(args.out, LOSSES_CSV), "w")
        loss_log.write("step,d_loss,g_loss\n")
        for _ in range(WARMUP_D_STEPS):
            sess.run(model.d_train, model.feed(batcher.next_batch(), legacy_z(rng, args.batch_size)))
        for i in range(args.steps):
            feed = model.feed(batcher.next_batch(), legacy_z(rng, args.batch_size))
            _, d_loss = sess.run([model.d_train, model.d_loss], feed)
            _, g_loss, summary = sess.run([model.g_train, model.g_loss, model.summaries], feed)
            loss_log.write(f"{i + 1},{d_loss:.6g},{g_loss:.6g}\n")
            if i in shown:
                writer.add_summary(summary, i)
                print(f"step {i}: d_loss {d_loss:.6f} g_loss {g_loss:.6f}", flush=True)
                samples = legacy_uint8(sess.run(model.Gz, feed))
                for k in range(3):
                    cv2.imwrite(os.path.join(args.out, f"out{k + 1}.bmp"), samples[k])
        writer.close()
        loss_log.close()
        path = model.saver.save(sess, os.path.join(args.out, CHECKPOINT_NAME))
    print(f"saved {path}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow()
    with exit_on_user_error("legacy_v1.train"):
        return train(args)


if __name__ == "__main__":
    sys.exit(main())
