"""Sample from a legacy checkpoint as the legacy script did: ``python -m legacy_v1.predict --help``.

z ~ N(0, 1), generator run with ``phase=1`` (so the sampling batch's own
statistics normalise it), ``clip(x * 255, 0, 255)`` as uint8, one PNG per image.
Only the network's variables are restored, so checkpoints without optimizer
slots (e.g. from ``genmnist.convert --to-legacy``) work too.

The command line (flags, one-line errors, the PNGs) is ``parity/legacy_predict.py``'s,
built on the port's modules: this package holds the legacy code alone, and :func:`main`
only hands over to it.
"""

import os
import sys


class CheckpointError(Exception):
    """A path that is no legacy checkpoint, or a checkpoint without the legacy GAN's variables. Message is one line;
    the commands print it as their error."""


def resolve_checkpoint(path):
    """A directory means its latest checkpoint; anything else must be an existing prefix."""
    import tensorflow as tf
    try:
        prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    except ValueError:  # an empty or binary checkpoint index
        prefix = None
    if not prefix or not os.path.exists(prefix + ".index"):
        raise CheckpointError(f"no TF checkpoint at {path}; pass the --out directory of legacy_v1.train "
                              "or a prefix like OUT/model")
    return prefix


def restore_network(model, sess, prefix):
    """Load the network's variables (no optimizer slots) from the name-based checkpoint ``prefix``."""
    import tensorflow as tf
    try:
        tf.compat.v1.train.Saver(model.model_vars).restore(sess, prefix)
    except (tf.errors.OpError, ValueError) as err:  # not its variables (NotFound, InvalidArgument), or junk (DataLoss)
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"{prefix} does not hold the legacy GAN's variables: {reason}") from None


def generate(prefix, z):
    """Restore the generator from ``prefix`` and return its raw output for ``z`` (phase=1)."""
    from legacy_v1.model import GANModel
    model = GANModel()
    with model.session() as sess:
        restore_network(model, sess, prefix)
        return sess.run(model.Gz, model.feed(z=z))


def main(argv=None):
    """``python -m legacy_v1.predict``: parity/legacy_predict.py's command line, imported only when it runs."""
    from parity.legacy_predict import main
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
