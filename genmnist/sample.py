"""Draw digits from a trained run (the legacy ``prediction``): ``python -m genmnist.sample --help``.

``--out`` decides the format: ``*.npz`` -> uint8 array ``images`` [N, 28, 28];
``*.png`` -> one grid picture; anything else -> a directory of one PNG per image.
"""

import os
import sys

import numpy as np

from genmnist import TF_LOG_HINT, argtypes, import_tensorflow
from genmnist.errors import UserError, exit_on_user_error

# TensorFlow and the modules built on it are imported where used: --help answers at once.
CHUNK = 1000  # images per generator call; bounds memory for large --num


def generate(generator, preset, num, seed):
    """``num`` uint8 images [num, 28, 28] from z ~ N(0, 1) seeded by ``seed``.

    The legacy preset samples with batch statistics, so its images depend on the
    sampling batch; chunks of CHUNK keep that batch large and the result deterministic.
    """
    import tensorflow as tf

    from genmnist import images
    from genmnist.models import Z_DIM

    z = tf.random.stateless_normal([num, Z_DIM], seed=[seed, 0])
    parts = [images.to_uint8(generator(z[i:i + CHUNK], training=False), preset.pixel_range)
             for i in range(0, num, CHUNK)]
    return np.concatenate(parts)


def write(pixels, out):
    from genmnist import images

    if out.endswith(".npz"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        np.savez_compressed(out + ".tmp.npz", images=pixels)  # then a rename: never half an archive
        os.replace(out + ".tmp.npz", out)
    elif out.endswith(".png"):
        images.write_png(out, images.grid(pixels))
    else:
        os.makedirs(out, exist_ok=True)
        for i, picture in enumerate(pixels):
            images.write_png(os.path.join(out, f"{i:05d}.png"), picture)


def main(argv=None):
    p = argtypes.Parser(
        prog="python -m genmnist.sample", description=__doc__.splitlines()[0], epilog=TF_LOG_HINT,
        formatter_class=argtypes.DefaultsFormatter)
    p.add_argument("--run", required=True, help="run directory written by genmnist.train (its --out)")
    p.add_argument("--num", type=argtypes.positive_int, default=64, help="how many images")
    p.add_argument("--out", required=True,
                   help="PATH.npz (uint8 array 'images' [N, 28, 28]), PATH.png (one grid) or a directory")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="seeds the noise z")
    args = p.parse_args(argv)
    import_tensorflow()
    from genmnist import rundir

    with exit_on_user_error("genmnist.sample"):
        if not os.path.isdir(args.run):
            raise UserError(f"run directory {args.run} does not exist")
        if not args.out.endswith((".npz", ".png")) and os.path.exists(args.out) and not os.path.isdir(args.out):
            raise UserError(f"--out {args.out} is an existing file; name a .npz, a .png or a directory")
        generator, preset = rundir.load_generator(args.run)
        write(generate(generator, preset, args.num, args.seed), args.out)
        print(f"wrote {args.num} images to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
