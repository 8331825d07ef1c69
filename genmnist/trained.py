"""A run's trained generator, as sample, evaluate and the benchmarks draw from it.

Lives beside :mod:`genmnist.rundir` (which knows the run directory's files) and
:mod:`genmnist.models` (which builds the networks) so neither needs the other.
"""

import os

import tensorflow as tf

from genmnist import rundir
from genmnist.errors import UserError
from genmnist.models import SamplingStatistics, build_models


def restore_generator(run_dir, average=True, step=None):
    """(generator, preset) of a run's newest readable checkpoint (or of ``ckpt-STEP``), exactly as saved:
    batch-norm statistics as trained, whatever the preset samples with.  For code that sets the
    statistics itself (the benchmarks); to draw samples use :func:`load_generator`.

    That is G's weight average when the run keeps one, unless ``average`` is False
    (G's own weights: what the benchmarks compare the average against).
    """
    config = rundir.read_config(run_dir)
    preset = config["preset"]
    generator, _ = build_models(preset)
    name = "ema_generator" if preset.ema_decay and average else "generator"
    candidates = rundir.run_checkpoints(run_dir)
    if not candidates:
        raise UserError(f"{run_dir} has no checkpoint yet; train it first")
    if step is not None:
        wanted = rundir.path(run_dir, rundir.CHECKPOINTS, f"ckpt-{step}")
        if wanted not in candidates:
            raise UserError(f"{run_dir} keeps no checkpoint of step {step}; it has "
                            + ", ".join(os.path.basename(c) for c in candidates))
        candidates = [wanted]
    rundir.restore(rundir.newest_readable(candidates), tf.train.Checkpoint(**{name: generator}))
    return generator, preset


def load_generator(run_dir, average=True, step=None):
    """(generator, preset) ready to sample: :func:`restore_generator`, then the batch-norm
    statistics its preset samples with (:class:`genmnist.models.SamplingStatistics`).  What genmnist.sample
    and genmnist.evaluate use."""
    generator, preset = restore_generator(run_dir, average, step)
    return SamplingStatistics(generator, preset.sampling_stats)(), preset
