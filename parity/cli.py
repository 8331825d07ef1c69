"""``python -m legacy_v1.parity [--data-dir DIR] [--batch-size B] [--steps K] [--seed S] ...``: prints one
row per checked quantity and exits 0 when every row is within tolerance, 1 otherwise."""

import argparse

import parity
import parity.tf_env  # noqa: F401  (before genmnist and TensorFlow: oneDNN off)
from genmnist import argtypes, import_tensorflow
from genmnist.errors import exit_on_user_error
from genmnist.presets import PRESETS
from parity.rows import FOOTNOTE, HEADER, summarize

# parity.checks (TensorFlow and both models) is imported after the flags are parsed: --help answers at once.


def main(argv=None):
    p = argtypes.Parser(prog="python -m legacy_v1.parity", description=parity.__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="MNIST directory (IDX or mnist_train.csv) for the real batches; "
                        "default: seeded synthetic images")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (legacy: 128)")
    p.add_argument("--steps", type=int, default=50,
                   help="training iterations compared after the D-only warm-up steps (also compared)")
    p.add_argument("--seed", type=int, default=0, help="seeds both models' initialisers, data and z")
    p.add_argument("--wgan-steps", type=int, default=10,
                   help="WGAN-GP iterations compared in the step and training stages (5 critic steps + 1 G step each)")
    p.add_argument("--warmup-d-steps", type=int, default=PRESETS["legacy"].warmup_d_steps,
                   help="D-only steps before the compared iterations (the legacy schedule's)")
    p.add_argument("--control", action="store_true",
                   help="instead of the checks, print the chaos floor: v1 free-running against itself with one "
                        "weight nudged by one ulp, on the same batches")
    p.add_argument("--full", action="store_true", help="print every gradient and variable row, not only the worst")
    args = p.parse_args(argv)
    if args.batch_size <= 0 or args.steps <= 0 or args.wgan_steps <= 0 or args.warmup_d_steps < 0:
        p.error("--batch-size and --steps must be positive, --warmup-d-steps not negative")
    import_tensorflow()
    from parity import checks
    if args.control:
        with exit_on_user_error("legacy_v1.parity"):
            rows = checks.control(args.batch_size, args.steps, args.seed, args.data_dir, args.warmup_d_steps)
        print(HEADER)
        for row in rows:
            print(row.line())
        print("control rows: 'max rel' is the drift ||a - b|| / ||a - a_initial|| for weights, "
              "the relative difference for losses")
        return 0
    with exit_on_user_error("legacy_v1.parity"):
        rows = checks.run(args.batch_size, args.steps, args.seed, args.data_dir, args.warmup_d_steps,
                          wgan_steps=args.wgan_steps)
    print(HEADER)
    for row in rows if args.full else summarize(rows):
        print(row.line())
    print(FOOTNOTE)
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)}/{len(rows)} checks within tolerance"
          + (f"; FAILED: {', '.join(r.stage + ':' + r.quantity for r in failed)}" if failed else ""))
    return 1 if failed else 0
