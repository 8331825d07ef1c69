"""The layout of a run directory, its config, and the checkpoint that ties them together.

    RUN/config.json            preset and run settings (written atomically)
    RUN/checkpoints/           tf.train.CheckpointManager: models, optimizers, step, seed
    RUN/samples/step_*.png     fixed-noise grids at the legacy milestones
    RUN/progress.gif           those grids animated
    RUN/eval.csv               --eval-every scores, one row per evaluated step
    RUN/logs/                  TensorBoard scalars and images
    RUN/export/                generator.keras and saved_model/ (z -> image)

Training, sampling, export and conversion all go through these helpers so
the layout is defined once.
"""

import json
import os

import tensorflow as tf

from genmnist.errors import UserError
from genmnist.models import (
    build_discriminator,
    build_generator,
    build_wgan_critic,
    build_wgan_generator,
    prepare_for_sampling,
)
from genmnist.presets import Preset

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
LOGS = "logs"
EXPORT = "export"
PROGRESS_GIF = "progress.gif"
EVAL_CSV = "eval.csv"


def path(run_dir, *parts):
    return os.path.join(run_dir, *parts)


def write_config(run_dir, config):
    os.makedirs(run_dir, exist_ok=True)
    tmp = path(run_dir, CONFIG + ".tmp")
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    os.replace(tmp, path(run_dir, CONFIG))


def read_config(run_dir):
    config_path = path(run_dir, CONFIG)
    if not os.path.isfile(config_path):
        raise UserError(f"{run_dir} is not a genmnist run directory (no {CONFIG}); "
                        "pass the --out directory of a training run")
    with open(config_path) as f:
        config = json.load(f)
    try:
        config["preset"] = Preset.from_dict(config["preset"])
    except (TypeError, ValueError) as err:
        raise UserError(f"{config_path} holds no usable preset ({err}); was it edited by hand?") from None
    return config


def build_models(preset):
    """(generator, discriminator) for the preset's model, batch norm and spectral norm settings."""
    if preset.model == "wgan":
        return build_wgan_generator(), build_wgan_critic(preset.spectral_norm)
    generator = build_generator(update_moving_stats=preset.update_moving_stats,
                                inference_stats="batch" if preset.sampling_stats == "batch" else "moving",
                                bn_momentum=preset.bn_momentum)
    return generator, build_discriminator(preset.spectral_norm)


def checkpoint_manager(run_dir, max_to_keep=3, **trackables):
    """A CheckpointManager over ``tf.train.Checkpoint(**trackables)`` in RUN/checkpoints,
    keeping the latest ``max_to_keep`` (None: every one).

    TF writes checkpoint data under temporary names and updates the index file
    atomically, so a run killed at any moment leaves the previous checkpoint intact.
    """
    checkpoint = tf.train.Checkpoint(**trackables)
    return tf.train.CheckpointManager(checkpoint, path(run_dir, CHECKPOINTS), max_to_keep=max_to_keep)


def restore_generator(run_dir, average=True, step=None):
    """(generator, preset) of a run's latest checkpoint (or of ``ckpt-STEP``), exactly as saved:
    batch-norm statistics as trained, whatever the preset samples with.  For code that sets the
    statistics itself (the benchmarks); to draw samples use :func:`load_generator`.

    That is G's weight average when the run keeps one, unless ``average`` is False
    (G's own weights: what the benchmarks compare the average against).
    """
    config = read_config(run_dir)
    preset = config["preset"]
    generator, _ = build_models(preset)
    name = "ema_generator" if preset.ema_decay and average else "generator"
    manager = checkpoint_manager(run_dir, **{name: generator})
    if manager.latest_checkpoint is None:
        raise UserError(f"{run_dir} has no checkpoint yet; train it first")
    checkpoint = manager.latest_checkpoint if step is None else path(run_dir, CHECKPOINTS, f"ckpt-{step}")
    if step is not None and checkpoint not in manager.checkpoints:
        raise UserError(f"{run_dir} keeps no checkpoint of step {step}; it has "
                        + ", ".join(os.path.basename(c) for c in manager.checkpoints))
    manager.checkpoint.restore(checkpoint).expect_partial()
    return generator, preset


def load_generator(run_dir, average=True, step=None):
    """(generator, preset) ready to sample: :func:`restore_generator`, then the batch-norm
    statistics its preset samples with (``preset.sampling_stats``; recomputed ones cost a few
    forward passes).  What genmnist.sample and genmnist.evaluate use."""
    generator, preset = restore_generator(run_dir, average, step)
    return prepare_for_sampling(generator, preset), preset
