"""Move weights between a legacy TF1 Saver checkpoint and a genmnist run directory.

``python -m genmnist.convert LEGACY_CKPT RUN_DIR`` reads the legacy name-based
checkpoint (``g_w1``, ``bn1/beta``, ``discriminator/d_w1``, ...) into a new run
directory with the ``legacy`` preset, so ``genmnist.sample`` reproduces the
legacy generator; ``--to-legacy`` writes RUN_DIR's latest weights back as a
name-based checkpoint (``LEGACY_CKPT/model``) that ``legacy_v1.predict`` restores.
Names are matched through :func:`genmnist.models.legacy_variables`, the same
table the parity checks use; Adam slots in legacy checkpoints are skipped
(the converted run carries weights only).
"""

import os
import sys

import numpy as np

from genmnist import TF_LOG_HINT, argtypes
from genmnist.errors import UserError, exit_on_user_error, starting
from genmnist.files import cannot_write
from genmnist.legacy_weights import assign_legacy, read_legacy
from genmnist.presets import PRESETS

# TensorFlow and the modules built on it are imported where used: --help answers at once.

LEGACY_PREFIX = "model"


def legacy_to_run(legacy_ckpt, run_dir):
    """Write a legacy-preset run directory whose checkpoint holds the legacy weights."""
    import tensorflow as tf

    from genmnist import rundir
    from genmnist.models import build_models, legacy_variables

    if os.path.isdir(rundir.path(run_dir, rundir.CHECKPOINTS)):
        raise UserError(f"{run_dir} already holds a run; choose a new RUN_DIR")
    values, prefix = read_legacy(legacy_ckpt)
    preset = PRESETS["legacy"]
    generator, discriminator = build_models(preset)
    assign_legacy(values, legacy_variables(generator, discriminator), prefix)
    with rundir.locked(run_dir):
        rundir.write_config(run_dir, {"preset": preset.to_dict(), "seed": 0,
                                      "batch_size": preset.run_batch_size, "steps": 0,
                                      "data_dir": None, "converted_from": os.path.abspath(prefix)})
        manager = rundir.checkpoint_manager(run_dir, generator=generator, discriminator=discriminator,
                                            step=tf.Variable(0, dtype=tf.int64, name="step"))
        return manager.save(checkpoint_number=0)


def run_to_legacy(run_dir, legacy_dir):
    """Write RUN_DIR's latest G and D as a name-based TF1 checkpoint ``legacy_dir/model``."""
    import tensorflow as tf

    from genmnist import rundir
    from genmnist.models import build_models, legacy_variables

    if os.path.exists(legacy_dir) and not os.path.isdir(legacy_dir):
        raise UserError(f"{legacy_dir} is an existing file; name a directory to write {LEGACY_PREFIX}.* into")
    config = rundir.read_config(run_dir)
    generator, discriminator = build_models(config["preset"])
    checkpoint = rundir.newest_readable(rundir.run_checkpoints(run_dir))
    if checkpoint is None:
        raise UserError(f"{run_dir} has no checkpoint yet; train it first")
    rundir.restore(checkpoint, tf.train.Checkpoint(generator=generator, discriminator=discriminator))
    values = {name: v.numpy() for name, v in legacy_variables(generator, discriminator).items()}
    return write_legacy(values, legacy_dir)


def write_legacy(values, legacy_dir):
    """Save ``{legacy name: array}`` with a compat.v1 Saver keyed by those names."""
    import tensorflow as tf

    try:
        os.makedirs(legacy_dir, exist_ok=True)
        graph = tf.Graph()
        with graph.as_default():
            variables = {name: tf.compat.v1.Variable(np.asarray(value), name=name.replace("/", "_"))
                         for name, value in values.items()}
            saver = tf.compat.v1.train.Saver(variables)
            with tf.compat.v1.Session(graph=graph) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                return saver.save(sess, os.path.join(legacy_dir, LEGACY_PREFIX))
    except (OSError, tf.errors.OpError) as err:  # TF writes under temporary names: nothing half-written stays
        raise cannot_write(os.path.join(legacy_dir, LEGACY_PREFIX), err) from None


def main(argv=None):
    p = argtypes.Parser(
        prog="python -m genmnist.convert", epilog=TF_LOG_HINT,
        description="Convert a legacy TF1 GANModel checkpoint (tf.train.Saver, names g_w1, bn1/beta, "
                    "discriminator/d_w1, ...) into a genmnist run directory with the legacy preset, or back.")
    p.add_argument("legacy_ckpt", metavar="LEGACY_CKPT",
                   help="legacy checkpoint: a directory (its latest checkpoint) or a prefix like OUT/model; "
                        "with --to-legacy, the directory to write LEGACY_CKPT/model into")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="genmnist run directory to create (must not hold a run yet); with --to-legacy, "
                        "the run whose latest checkpoint is read")
    p.add_argument("--to-legacy", action="store_true",
                   help="convert the other way: RUN_DIR's latest weights -> LEGACY_CKPT/model")
    args = p.parse_args(argv)
    with starting("genmnist.convert", __name__ == "__main__"):
        from genmnist import rundir
    with exit_on_user_error("genmnist.convert"):
        if args.to_legacy:
            print(f"wrote {run_to_legacy(args.run_dir, args.legacy_ckpt)}")
        else:
            path = legacy_to_run(args.legacy_ckpt, args.run_dir)
            print(f"wrote {path} (config: {rundir.path(args.run_dir, rundir.CONFIG)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
