"""Sample from a legacy checkpoint as the legacy script did: ``python -m legacy_v1.predict --help``.

z ~ N(0, 1), generator run with ``phase=1`` (so the sampling batch's own
statistics normalise it), ``clip(x * 255, 0, 255)`` as uint8, one PNG per image.
Only the network's variables are restored, so checkpoints without optimizer
slots (e.g. from ``genmnist.convert --to-legacy``) work too.
"""

import os
import sys

import cv2
import numpy as np

from genmnist import argtypes, import_tensorflow
from genmnist.errors import UserError, exit_on_user_error


def parse_args(argv=None):
    p = argtypes.Parser(
        prog="python -m legacy_v1.predict",
        description="Generate MNIST digits from a legacy_v1 (tf.compat.v1 Saver) checkpoint; writes OUT/0.png ...",
        formatter_class=argtypes.DefaultsFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint directory (its latest checkpoint is used) or checkpoint prefix, e.g. OUT/model")
    p.add_argument("--num", type=int, default=16, help="number of images (also the batch-norm batch)")
    p.add_argument("--out", required=True, help="directory for the PNGs")
    p.add_argument("--seed", type=int, default=0, help="seeds the NumPy RNG that draws z")
    args = p.parse_args(argv)
    if args.num <= 0:
        p.error("--num must be positive")
    return args


def resolve_checkpoint(path):
    """A directory means its latest checkpoint; anything else must be an existing prefix."""
    import tensorflow as tf
    try:
        prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    except ValueError:  # an empty or binary checkpoint index
        prefix = None
    if not prefix or not os.path.exists(prefix + ".index"):
        raise UserError(f"no TF checkpoint at {path}; pass the --out directory of legacy_v1.train "
                        "or a prefix like OUT/model")
    return prefix


def restore_network(model, sess, prefix):
    """Load the network's variables (no optimizer slots) from the name-based checkpoint ``prefix``."""
    import tensorflow as tf
    try:
        tf.compat.v1.train.Saver(model.model_vars).restore(sess, prefix)
    except (tf.errors.OpError, ValueError) as err:  # not its variables (NotFound, InvalidArgument), or junk (DataLoss)
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise UserError(f"{prefix} does not hold the legacy GAN's variables: {reason}") from None


def generate(prefix, z):
    """Restore the generator from ``prefix`` and return its raw output for ``z`` (phase=1)."""
    from legacy_v1.model import GANModel
    model = GANModel()
    with model.session() as sess:
        restore_network(model, sess, prefix)
        return sess.run(model.Gz, model.feed(z=z))


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow()
    with exit_on_user_error("legacy_v1.predict"):
        from legacy_v1.batching import legacy_z
        from legacy_v1.train import legacy_uint8
        z = legacy_z(np.random.default_rng(args.seed), args.num)
        images = legacy_uint8(generate(resolve_checkpoint(args.checkpoint), z))
        os.makedirs(args.out, exist_ok=True)
        for i, image in enumerate(images):
            cv2.imwrite(os.path.join(args.out, f"{i}.png"), image)
        print(f"wrote {len(images)} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
