"""Draw digits from a trained run (the legacy ``prediction``): ``python -m genmnist.sample --help``.

``--out`` decides the format: ``*.npz`` -> uint8 array ``images`` [N, 28, 28];
``*.png`` -> one grid picture; anything else -> a directory of one PNG per image.
"""

import os
import sys

import numpy as np

from genmnist import TF_LOG_HINT, argtypes, files
from genmnist.errors import UserError, exit_on_user_error, starting

# TensorFlow and the modules built on it are imported where used: --help answers at once.
CHUNK = 1000  # images per generator call; bounds the generator's memory for large --num
MAX_NUM = 200_000  # z and the images are held at once: about 1.2 kB per image, 240 MB at this bound


def check_num(num):
    """Refuse a --num whose images would not fit in a bounded amount of memory, before any is drawn."""
    if num > MAX_NUM:
        raise UserError(f"--num {num} is above the limit of {MAX_NUM} images per call (they are held in memory); "
                        "draw several sets with different --seed")


def generate(generator, preset, num, seed):
    """``num`` uint8 images [num, 28, 28] from z ~ N(0, 1) seeded by ``seed``.

    The legacy preset samples with batch statistics, so its images depend on the
    sampling batch; chunks of CHUNK keep that batch large and the result deterministic.
    """
    import tensorflow as tf

    from genmnist import images
    from genmnist.models import Z_DIM

    check_num(num)
    z = tf.random.stateless_normal([num, Z_DIM], seed=[seed, 0])
    parts = [images.to_uint8(generator(z[i:i + CHUNK], training=False), preset.pixel_range)
             for i in range(0, num, CHUNK)]
    return np.concatenate(parts)


def check_out(out):
    """--out names something this command can write: a UserError before the generator is loaded."""
    if out.endswith((".npz", ".png")):
        if os.path.isdir(out):
            raise UserError(f"--out {out} is an existing directory; name a new .npz or .png file, "
                            "or the directory without the extension")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is an existing file; name a .npz, a .png or a directory")


def write(pixels, out):
    """Every format whole or not at all: the file under a temporary name, the PNG folder in a temporary
    folder, then renamed (:mod:`genmnist.files`)."""
    from genmnist import images

    if out.endswith(".npz"):
        with files.replacing(out) as tmp:
            np.savez_compressed(tmp, images=pixels)
    elif out.endswith(".png"):
        images.write_png(out, images.grid(pixels))
    else:
        with files.filling(out) as tmp:
            for i, picture in enumerate(pixels):
                with open(os.path.join(tmp, f"{i:05d}.png"), "wb") as f:
                    f.write(images.png_bytes(picture))


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
    with starting("genmnist.sample", __name__ == "__main__"):
        from genmnist import trained
    with exit_on_user_error("genmnist.sample", "no output was left half-written"):
        if not os.path.isdir(args.run):
            raise UserError(f"run directory {args.run} does not exist")
        check_out(args.out)
        check_num(args.num)
        generator, preset = trained.load_generator(args.run)
        write(generate(generator, preset, args.num, args.seed), args.out)
        print(f"wrote {args.num} images to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
