"""Train the legacy GAN as the legacy script did: ``python -m legacy_v1.train --help``.

30 D-only warm-up steps, then per iteration one D step and one G step on the
same z; losses printed and ``out1.bmp``..``out3.bmp`` written at the legacy
DISPLAY_STEP cadence and at the last iteration; a name-based Saver checkpoint
at the end.  Windows paths, scipy.misc and tf.contrib are gone; nothing else is
fixed.  Two additions for parity work: ``--init-from`` and ``losses.csv``.

The command line (flags, one-line errors, reading MNIST) is ``parity/legacy_train.py``'s,
built on the port's modules: this package holds the legacy code alone, and :func:`main`
only hands over to it.
"""

import datetime
import os
import sys

import cv2
import numpy as np

from legacy_v1.batching import legacy_z

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


def train(model, sess, batcher, rng, steps, out):
    """The legacy loop: ``model`` (a ``GANModel``) trained in ``sess``, its variables already set, on
    ``batcher``'s batches with z drawn from ``rng``, writing into the existing directory ``out``
    (images, ``losses.csv``, a TensorBoard log).  Returns the prefix of the Saver checkpoint written."""
    import tensorflow as tf

    log_dir = os.path.join(out, "logs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    shown = set(display_steps(steps))
    writer = tf.compat.v1.summary.FileWriter(log_dir, model.graph)
    loss_log = open(os.path.join(out, LOSSES_CSV), "w")
    loss_log.write("step,d_loss,g_loss\n")
    for _ in range(WARMUP_D_STEPS):
        sess.run(model.d_train, model.feed(batcher.next_batch(), legacy_z(rng, batcher.batch_size)))
    for i in range(steps):
        feed = model.feed(batcher.next_batch(), legacy_z(rng, batcher.batch_size))
        _, d_loss = sess.run([model.d_train, model.d_loss], feed)
        _, g_loss, summary = sess.run([model.g_train, model.g_loss, model.summaries], feed)
        loss_log.write(f"{i + 1},{d_loss:.6g},{g_loss:.6g}\n")
        if i in shown:
            writer.add_summary(summary, i)
            print(f"step {i}: d_loss {d_loss:.6f} g_loss {g_loss:.6f}", flush=True)
            samples = legacy_uint8(sess.run(model.Gz, feed))
            for k in range(3):
                cv2.imwrite(os.path.join(out, f"out{k + 1}.bmp"), samples[k])
    writer.close()
    loss_log.close()
    return model.saver.save(sess, os.path.join(out, CHECKPOINT_NAME))


def main(argv=None):
    """``python -m legacy_v1.train``: parity/legacy_train.py's command line, imported only when it runs."""
    from parity.legacy_train import main
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
