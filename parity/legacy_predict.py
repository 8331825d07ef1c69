"""``python -m legacy_v1.predict``'s command line: flags, one-line errors, and the PNGs.

The legacy sampling (checkpoint, z, phase=1, uint8) is ``legacy_v1``'s; this glue, which uses
genmnist's flag types and errors, lives here so that ``legacy_v1`` holds the legacy code alone.
``legacy_v1/predict.py`` keeps the entry point and hands over to :func:`main`.
"""

import contextlib
import os

import cv2
import numpy as np

from genmnist import argtypes, import_tensorflow
from genmnist.errors import UserError, exit_on_user_error

# legacy_v1's modules (TensorFlow among them) are imported after the flags are parsed: --help answers at once.


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


@contextlib.contextmanager
def one_line_errors(prog):
    """:func:`genmnist.errors.exit_on_user_error`, with legacy_v1's ``CheckpointError`` (a bad --checkpoint or
    --init-from) one line with exit status 2 as well."""
    from legacy_v1.predict import CheckpointError
    with exit_on_user_error(prog):
        try:
            yield
        except CheckpointError as err:
            raise UserError(str(err)) from None


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow()
    with one_line_errors("legacy_v1.predict"):
        from legacy_v1.batching import legacy_z
        from legacy_v1.predict import generate, resolve_checkpoint
        from legacy_v1.train import legacy_uint8
        z = legacy_z(np.random.default_rng(args.seed), args.num)
        images = legacy_uint8(generate(resolve_checkpoint(args.checkpoint), z))
        os.makedirs(args.out, exist_ok=True)
        for i, image in enumerate(images):
            cv2.imwrite(os.path.join(args.out, f"{i}.png"), image)
        print(f"wrote {len(images)} images to {args.out}")
    return 0
