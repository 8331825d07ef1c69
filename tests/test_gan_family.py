"""The loss family's training schedules: clipping, critic steps, penalty, spectral norm, the WGAN model."""

import numpy as np
import pytest
import tensorflow as tf

from genmnist.models import build_models
from genmnist.presets import get_preset
from genmnist.training import GANTrainer


def _trainer(preset, batch=8):
    tf.keras.utils.set_random_seed(0)
    generator, discriminator = build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset)
    real = tf.random.uniform([batch, 28, 28, 1], *preset.pixel_range, seed=1)
    z = tf.random.normal([batch, preset.n_critic, 100], seed=2)
    return trainer, real, z


def test_weight_clipping_holds_after_a_step():
    preset = get_preset("dcgan", "default").with_loss("wgan")
    assert (preset.n_critic, preset.clip) == (5, 0.01)
    trainer, real, z = _trainer(preset)
    trainer.train_step(real, z)
    for v in trainer.d_variables:
        assert float(tf.reduce_max(tf.abs(v))) <= 0.01 + 1e-9
    assert max(float(tf.reduce_max(tf.abs(v))) for v in trainer.g_variables) > 0.01  # G is not clipped


@pytest.mark.parametrize("model, loss, n_critic", [("dcgan", "nonsaturating", 1),
                                                   pytest.param("dcgan", "wgan-gp", 5, marks=pytest.mark.slow),
                                                   pytest.param("wgan", None, 5, marks=pytest.mark.slow),
                                                   ("dcgan", "hinge", 3)])
def test_critic_steps_per_generator_step(model, loss, n_critic):
    preset = get_preset(model, "default")
    preset = (preset.with_loss(loss) if loss else preset).replace(n_critic=n_critic)
    trainer, real, z = _trainer(preset)
    for _ in range(2):
        metrics = trainer.train_step(real, z)
    assert int(trainer.d_optimizer.iterations) == 2 * n_critic
    assert int(trainer.g_optimizer.iterations) == 2
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_gradient_penalty_adds_its_weight_times_the_penalty_to_the_critic_loss():
    base = get_preset("dcgan", "default").with_loss("wgan-gp").replace(n_critic=1)
    with_gp, real, z = _trainer(base)
    without_gp, _, _ = _trainer(get_preset("dcgan", "default").with_loss("wgan").replace(n_critic=1))
    # The penalty by hand, on the weights before the update: u from a generator seeded as the
    # trainer's, x_hat between real and G(z), one gradient per example (D has no batch coupling).
    u = tf.random.Generator.from_seed(0).uniform([1, 8, 1, 1, 1])[0]
    fake = with_gp.generator(z[:, 0], training=True)
    x_hat = real + u * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        scores = tf.reduce_sum(with_gp.discriminator(x_hat, training=True))
    grads = tape.gradient(scores, x_hat).numpy().reshape(8, -1).astype(np.float64)
    penalty = np.mean((np.linalg.norm(grads, axis=1) - 1.0) ** 2)
    m1, m2 = with_gp.train_step(real, z), without_gp.train_step(real, z)
    # same weights, data and z, both unclipped (wgan's clip only acts after the update):
    # the reported critic losses differ by exactly gp_weight * penalty
    assert base.gp_weight == 10
    np.testing.assert_allclose(float(m1["d_loss"]) - float(m2["d_loss"]), 10 * penalty, rtol=1e-4)


@pytest.mark.slow  # the parity harness's WGAN stages rely on it too
def test_given_interpolation_weights_replace_the_trainers_own_draw():
    """train_step's u (how the parity harness feeds the legacy graph's u) is the u the penalty uses."""
    preset = get_preset("dcgan", "default").with_loss("wgan-gp").replace(n_critic=1)
    drawn, real, z = _trainer(preset)
    given, _, _ = _trainer(preset)
    other, _, _ = _trainer(preset)
    u = tf.random.Generator.from_seed(0).uniform([1, 8, 1, 1, 1])  # what a trainer seeded 0 draws first
    want = float(drawn.train_step(real, z)["d_loss"])
    assert float(given.train_step(real, z, u)["d_loss"]) == want
    assert float(other.train_step(real, z, 1.0 - u)["d_loss"]) != want


def test_legacy_wgan_preset_uses_the_legacy_penalty_and_sign():
    """The legacy critic loss, by hand: mean D(x) - mean D(G(z)) (the legacy sign) plus 10 x the legacy
    penalty, u drawn per pixel and the gradient's norm taken over axis 1 only (one norm per image column)."""
    preset = get_preset("wgan", "legacy")
    assert (preset.learning_rate, preset.beta1, preset.beta2, preset.n_critic) == (1e-4, 0.5, 0.9, 5)
    trainer, real, z = _trainer(preset.replace(n_critic=1))
    assert trainer.generator.name == "wgan_generator"
    fake = trainer.generator(z[:, 0], training=True)
    assert float(tf.reduce_min(fake)) >= 0.0  # sigmoid output: pixels in [0, 1]
    u = tf.random.Generator.from_seed(0).uniform([1, 8, 28, 28, 1])[0]  # the trainer's stream, per pixel
    x_hat = real + u * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        scores = tf.reduce_sum(trainer.discriminator(x_hat, training=True))
    grads = tape.gradient(scores, x_hat).numpy().astype(np.float64)  # [8, 28, 28, 1]
    penalty = np.mean((np.sqrt((grads ** 2).sum(axis=1)) - 1.0) ** 2)  # norms over axis 1: [8, 28, 1]
    critic = (np.mean(trainer.discriminator(real, training=True)) - np.mean(trainer.discriminator(fake, training=True)))
    metrics = trainer.discriminator_step(real, z)
    np.testing.assert_allclose(float(metrics["d_loss"]), critic + 10 * penalty, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(metrics["penalty"]), 10 * penalty, rtol=1e-4)
    whole_image = np.mean((np.sqrt((grads ** 2).sum(axis=(1, 2, 3))) - 1.0) ** 2)
    assert abs(10 * whole_image - 10 * penalty) > 1e-2  # the test tells the two penalties apart


def test_spectral_norm_keeps_the_legacy_names_and_normalises():
    # One power iteration per call tracks the kernel as G's rate moves it; D's faster default rate moves
    # it further per step than three iterations converge.
    preset = get_preset("dcgan", "default").replace(spectral_norm=True, d_learning_rate=2e-4)
    trainer, real, z = _trainer(preset)
    for _ in range(3):
        trainer.train_step(real, z)
    kernel = trainer.discriminator.get_layer("d_3").layer.kernel
    top_singular = float(tf.linalg.svd(tf.reshape(kernel, [-1, kernel.shape[-1]]), compute_uv=False)[0])
    assert top_singular == pytest.approx(1.0, rel=0.1)


def test_label_smoothing_lowers_the_real_target():
    base = get_preset("dcgan", "default").with_loss("nonsaturating")  # a sigmoid loss: smoothing applies
    plain, real, z = _trainer(base)
    smooth, _, _ = _trainer(base.replace(label_smoothing=0.1))
    real_logits = plain.discriminator(real, training=True)  # same weights in both trainers
    m_plain, m_smooth = plain.train_step(real, z[:, 0]), smooth.train_step(real, z[:, 0])
    # BCE(l, y) = softplus(l) - y * l, so a target of 0.9 instead of 1 adds 0.1 * mean(l)
    np.testing.assert_allclose(float(m_smooth["d_loss"]) - float(m_plain["d_loss"]),
                               0.1 * float(tf.reduce_mean(real_logits)), rtol=1e-3, atol=1e-6)
    for other in (get_preset("dcgan", "legacy"), get_preset("dcgan", "default")):  # raw logs, least squares
        with pytest.raises(ValueError, match="label smoothing"):
            _trainer(other.replace(label_smoothing=0.1))


@pytest.mark.parametrize("decay, warmup, expected", [(0.1, 10.0, 0.1), (0.9, 10.0, 2 / 11), (0.9, 4.0, 2 / 5)])
def test_ema_sampler_averages_the_generator_weights(decay, warmup, expected):
    """After G step 1 the decay is min(decay, (1 + 1) / (warmup + 1)): capped at 0.1, warming up at 0.9."""
    preset = get_preset("dcgan", "default").replace(ema_decay=decay, ema_warmup=warmup)
    trainer, real, z = _trainer(preset)
    before = [v.numpy().copy() for v in trainer.generator.trainable_variables]
    trainer.train_step(real, z[:, 0])
    assert int(trainer.g_optimizer.iterations) == 1
    for avg, old, new in zip(trainer.sampler.trainable_variables, before, trainer.generator.trainable_variables):
        np.testing.assert_allclose(avg.numpy(), expected * old + (1 - expected) * new.numpy(), rtol=1e-5, atol=1e-7)
    for avg, live in zip(trainer.sampler.non_trainable_variables, trainer.generator.non_trainable_variables):
        np.testing.assert_array_equal(avg.numpy(), live.numpy())
