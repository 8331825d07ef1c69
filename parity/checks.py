"""The whole parity run (both pairs, every stage) and the chaos control it is read against."""

import parity.tf_env  # noqa: F401  (first: oneDNN off before TensorFlow is imported)

# isort: split
import contextlib
import dataclasses

import numpy as np
import tensorflow as tf

from genmnist.presets import PRESETS, WGAN_PRESETS
from legacy_v1 import Z_DIM
from legacy_v1.batching import LegacyBatcher, legacy_z
from legacy_v1.model import GANModel
from parity.inputs import real_pixels
from parity.pairs import DcganPair, WganPair
from parity.rows import compare, compare_drift, keep_worst
from parity.stages import stage_forward_losses_gradients, stage_training, stage_variables, wgan_stages_1_to_3
from parity.tolerances import TOLERANCES

WARMUP_D_STEPS = PRESETS["legacy"].warmup_d_steps
_REWRITES = ("arithmetic_optimization", "remapping")


@contextlib.contextmanager
def plain_arithmetic():
    """Grappler's arithmetic rewrites and op fusion off while parity runs, restored after.

    Scoped rather than set at import, so importing this module (the tests do) does
    not change the numerics of everything else in the process.
    """
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({name: False for name in _REWRITES})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({name: saved.get(name, True) for name in _REWRITES})


def legacy_schedule(batches, zs, warmup):
    """``DcganPair.iterate`` arguments for the legacy schedule: ``warmup`` D-only steps, then D and G."""
    return [(real, z, step < warmup) for step, (real, z) in enumerate(zip(batches, zs))]


def legacy_inputs(batch_size, warmup, steps, seed, data_dir):
    """(real, z) for stages 2-4, then the legacy schedule of ``warmup`` + ``steps`` iterations: batches
    drawn as the legacy loader did, from ``seed`` alone (so the control sees what :func:`run` sees)."""
    rng = np.random.default_rng(seed)
    total = warmup + steps
    batcher = LegacyBatcher(real_pixels(data_dir, batch_size * (total + 1), rng), batch_size, rng)
    first = batcher.next_batch(), legacy_z(rng, batch_size)
    batches = [batcher.next_batch() for _ in range(total)]
    zs = [legacy_z(rng, batch_size) for _ in range(total)]
    return first, legacy_schedule(batches, zs, warmup)


@plain_arithmetic()
def run(batch_size=128, steps=50, seed=0, data_dir=None, warmup=WARMUP_D_STEPS, free_running=True, wgan=True,
        wgan_steps=10):
    """All stages; returns the table rows.  ``steps`` counts iterations after the ``warmup`` D-only ones;
    ``wgan_steps`` the WGAN-GP pair's iterations (5 critic steps and a G step each)."""
    (real, z), schedule = legacy_inputs(batch_size, warmup, steps, seed, data_dir)
    pair = DcganPair(seed).ready()
    rows = stage_variables(pair)
    rows += stage_forward_losses_gradients(pair, real, z)
    rows += stage_training(pair, schedule, forced=True)
    pair.close()
    if free_running:
        pair = DcganPair(seed).ready()  # a fresh pair, same initial weights, for the free-running run
        rows += stage_training(pair, schedule)
        pair.close()
    if wgan:
        # the legacy WGANModel's batch is 64
        rows += run_wgan(min(batch_size, 64), wgan_steps, seed, data_dir, free_running)
    return rows


@plain_arithmetic()
def run_wgan(batch_size=64, steps=10, seed=0, data_dir=None, free_running=True):
    """All stages for the WGAN-GP pair (legacy WGANModel against genmnist's legacy WGAN preset).

    The interpolation weights u (drawn per element, the legacy bug) are fed to
    both sides as the same NumPy arrays; the penalty's norm runs over axis 1 on both.
    """
    rng = np.random.default_rng(seed)
    n_critic = WGAN_PRESETS["legacy"].n_critic
    pixels = real_pixels(data_dir, batch_size * (steps + 1), rng).reshape(-1, batch_size, 28, 28, 1)
    z, u = legacy_z(rng, batch_size), rng.random(pixels[0].shape).astype(np.float32)
    zs = rng.standard_normal((steps, n_critic, batch_size, Z_DIM)).astype(np.float32)
    us = rng.random((steps, n_critic, *pixels[0].shape)).astype(np.float32)
    pair = WganPair(batch_size, seed)
    rows = wgan_stages_1_to_3(pair, pixels[0], z, u)
    if not rows[0].ok:
        return rows
    pair.ready()
    iterations = list(zip(pixels[1:], zs, us))
    rows += stage_training(pair, iterations, forced=True)
    pair.close()
    if free_running:
        pair = WganPair(batch_size, seed).ready()
        rows += stage_training(pair, iterations)
        pair.close()
    return [dataclasses.replace(r, stage="wgan-" + r.stage) if not r.stage.startswith("wgan") else r for r in rows]


def control(batch_size=128, steps=50, seed=0, data_dir=None, warmup=WARMUP_D_STEPS):
    """The chaos floor: v1 against itself with one D weight nudged by one float32 ulp.

    Same batches and z as :func:`run`; returns the free-running rows of that
    pair, to set beside v1 against v2.  Not a check: it never fails.
    """
    _, schedule = legacy_inputs(batch_size, warmup, steps, seed, data_dir)
    models = [GANModel(PRESETS["legacy"].learning_rate, PRESETS["legacy"].beta1, seed=seed) for _ in range(2)]
    sessions = [m.session() for m in models]
    for model, sess in zip(models, sessions):
        sess.run(model.init)
    with models[1].graph.as_default():
        weight = next(v for v in models[1].model_vars if v.name == "discriminator/d_w4:0")
        value = sessions[1].run(weight)
        value[0, 0] = np.nextafter(value[0, 0], np.float32(1))
        weight.load(value, sessions[1])
    names = [v.name[:-2] for v in models[0].model_vars]
    trained = {v.name[:-2] for v in models[0].d_vars + models[0].g_vars}
    initial = dict(zip(names, sessions[0].run(models[0].model_vars)))
    worst = {}

    def keep(row):  # an information row: never a failure
        keep_worst(worst, dataclasses.replace(row, ok=True))

    for real, z, d_only in schedule:
        losses_ = []
        for model, sess in zip(models, sessions):
            feed = model.feed(real, z)
            d = sess.run([model.d_train, model.d_loss], feed)[1]
            g = np.nan if d_only else sess.run([model.g_train, model.g_loss], feed)[1]
            losses_.append((d, g))
        for i, name in enumerate(("d_loss per step", "g_loss per step")[:1 if d_only else 2]):
            keep(compare("control", name, losses_[0][i], losses_[1][i], TOLERANCES["training"]))
        a, b = (dict(zip(names, sess.run(m.model_vars))) for m, sess in zip(models, sessions))
        for name in trained:
            keep(compare_drift("control", name, a[name], b[name], initial[name]))
    for sess in sessions:
        sess.close()
    return [worst[n] for n in names if n in worst] + [worst["d_loss per step"], worst["g_loss per step"]]
