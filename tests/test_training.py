"""One training step changes exactly the variables it should, in each preset."""

import numpy as np
import tensorflow as tf

from genmnist import rundir
from genmnist.models import legacy_variables
from genmnist.presets import PRESETS
from genmnist.train import is_milestone
from genmnist.training import GANTrainer


def _setup(preset_name, batch=8):
    tf.keras.utils.set_random_seed(0)
    preset = PRESETS[preset_name]
    generator, discriminator = rundir.build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset)
    real = tf.random.uniform([batch, 28, 28, 1], *preset.pixel_range, seed=1)
    z = tf.random.normal([batch, 100], seed=2)
    return trainer, legacy_variables(generator, discriminator), real, z


def _changed(table, step):
    before = {k: v.numpy().copy() for k, v in table.items()}
    step()
    return {k for k, v in table.items() if not np.array_equal(before[k], v.numpy())}


def test_legacy_step_leaves_bn_offsets_and_moving_stats_alone():
    trainer, table, real, z = _setup("legacy")
    changed = _changed(table, lambda: trainer.train_step(real, z))
    expected = {k for k in table if k.startswith(("g_", "discriminator/"))}
    assert changed == expected


def test_default_step_trains_every_variable_and_tracks_moving_stats():
    trainer, table, real, z = _setup("default")
    assert _changed(table, lambda: trainer.train_step(real, z)) == set(table)


def test_discriminator_step_changes_only_the_discriminator():
    trainer, table, real, z = _setup("legacy")
    changed = _changed(table, lambda: trainer.discriminator_step(real, z))
    assert changed == {k for k in table if k.startswith("discriminator/")}


def test_generator_step_uses_the_updated_discriminator():
    """G's loss in train_step is computed against D after its update, as the legacy graph did."""
    trainer, table, real, z = _setup("legacy")
    metrics = trainer.train_step(real, z)
    # A twin trainer that only ran the D step holds exactly the (updated D, old G) pair.
    other, _, _, _ = _setup("legacy")
    other.discriminator_step(real, z)
    fake_logits = other.discriminator(other.generator(z, training=True), training=True)
    _, g_loss = other.loss(fake_logits, fake_logits)
    np.testing.assert_allclose(float(metrics["g_loss"]), float(g_loss), rtol=1e-5)


def test_adam_matches_the_legacy_hyperparameters():
    trainer, _, _, _ = _setup("legacy")
    opt = trainer.d_optimizer
    np.testing.assert_allclose(float(opt.learning_rate), 5e-4, rtol=1e-6)  # stored as float32
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)


def test_milestones_follow_the_legacy_display_cadence():
    assert [i for i in range(2500) if is_milestone(i)] == (
        [0] + list(range(10, 100, 10)) + list(range(100, 1000, 100)) + [1000, 2000])
