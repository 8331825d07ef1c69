"""The cheap gradient penalty computes what the plain nested-tape formula computes, and is cheaper."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from genmnist import double_backprop, losses
from genmnist.models import build_models
from genmnist.presets import get_preset
from genmnist.training import GANTrainer

BATCH = 8


def _reference_penalty(critic, real, fake, u, axes):
    """WGAN-GP written out here, independently of genmnist: mean((||dD/dx at x_hat|| - 1)^2)."""
    x_hat = u * fake + (1.0 - u) * real
    with tf.GradientTape() as inner:
        inner.watch(x_hat)
        total = tf.reduce_sum(critic(x_hat, training=True))
    slopes = tf.norm(tf.reshape(tf.transpose(inner.gradient(total, x_hat), [0, *axes, *_rest(axes)]),
                                [BATCH, _size(axes), -1]), axis=1)
    return tf.reduce_mean((slopes - 1.0) ** 2)


def _rest(axes):
    return [a for a in (1, 2, 3) if a not in axes]


def _size(axes):
    return int(np.prod([(28, 28, 1)[a - 1] for a in axes]))


def _inputs(per_element):
    real = tf.random.stateless_uniform([BATCH, 28, 28, 1], [1, 1])
    fake = tf.random.stateless_uniform([BATCH, 28, 28, 1], [2, 2])
    u = tf.random.stateless_uniform([BATCH, 28, 28, 1] if per_element else [BATCH, 1, 1, 1], [3, 3])
    return real, fake, u


def _penalty_and_gradients(penalty, critic, real, fake, u, axes):
    """The penalty plus a critic loss, and its gradients, in one compiled step as the trainer uses it."""
    @tf.function
    def run():
        with tf.GradientTape() as tape:
            value = 10.0 * penalty(critic, real, fake, u, axes)
            loss = value + tf.reduce_mean(critic(fake, training=True)) - tf.reduce_mean(critic(real, training=True))
        return value, tape.gradient(loss, critic.trainable_variables)
    start = critic.get_weights()
    value, grads = run()
    critic.set_weights(start)  # spectral norm's power iteration moved: the other side starts from the same state
    return float(value), [g.numpy() for g in grads]


def _tanh_critic():
    images = keras.Input((28, 28, 1))
    x = keras.layers.Dense(8, activation="tanh")(keras.layers.Flatten()(images))
    return keras.Model(images, keras.layers.Dense(1)(x))


@pytest.mark.parametrize("model,spectral_norm,legacy_axes", [
    ("dcgan", False, False), pytest.param("dcgan", True, False, marks=pytest.mark.slow), ("wgan", False, False),
    pytest.param("wgan", False, True, marks=pytest.mark.slow), ("tanh", 0, 0)])
def test_cheap_penalty_and_its_gradients_equal_the_plain_formula(model, spectral_norm, legacy_axes):
    keras.utils.set_random_seed(0)
    if model == "tanh":  # a smooth critic: its second-order terms are real, nothing is cut
        critic = _tanh_critic()
    else:
        _, critic = build_models(get_preset(model, "default").replace(spectral_norm=spectral_norm or None))
    real, fake, u = _inputs(per_element=legacy_axes)
    axes = [1] if legacy_axes else [1, 2, 3]
    expected, expected_grads = _penalty_and_gradients(_reference_penalty, critic, real, fake, u, axes)
    got, got_grads = _penalty_and_gradients(double_backprop.gradient_penalty, critic, real, fake, u, axes)
    assert expected > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for g, e in zip(got_grads, expected_grads):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6 * float(np.abs(e).max()) + 1e-12)
    assert float(np.abs(expected_grads[-1]).max()) == 0.0  # the last bias: only the loss's exact cancellation
    assert float(np.abs(got_grads[-1]).max()) == 0.0


@pytest.mark.parametrize("model", ["dcgan", "wgan", "tanh"])
def test_only_piecewise_linear_critics_have_their_masks_cut(model):
    """ReLU / leaky-ReLU / pooling critics: every activation the input gradient reads is a mask; tanh: not."""
    keras.utils.set_random_seed(0)
    critic = _tanh_critic() if model == "tanh" else build_models(get_preset(model, "default"))[1]
    real, _, _ = _inputs(False)
    found = {}

    @tf.function
    def trace(x):
        grads, found["masks"] = double_backprop.input_gradient(critic, x)
        return grads
    trace(real)
    assert (found["masks"] is None) == (model == "tanh")
    if model != "tanh":
        assert {m.op.type for m in found["masks"]} >= {"Relu" if model == "dcgan" else "BiasAdd"}


def test_critic_step_with_the_cheap_penalty_equals_the_plain_one():
    """One DCGAN WGAN-GP critic step (Adam update included) is the step with the reference penalty."""
    preset = get_preset("dcgan", "default").with_loss("wgan-gp")
    real, _, _ = _inputs(False)
    z = tf.random.stateless_normal([BATCH, preset.n_critic, 100], [4, 4])
    results = []
    for reference in (True, False):
        keras.utils.set_random_seed(0)
        trainer = GANTrainer(*build_models(preset), preset, seed=3)
        if reference:
            critic = trainer.discriminator
            trainer._penalty = lambda r, f, u, d=critic: preset.gp_weight * _reference_penalty(d, r, f, u, [1, 2, 3])
        metrics = trainer.discriminator_step(real, z)
        results.append((float(metrics["d_loss"]), [v.numpy() for v in trainer.d_variables]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    # Adam moves a weight by up to its rate; where a gradient is near Adam's epsilon the two penalties'
    # rounding can shift that step by a little, so the bound is a thousandth of a step.
    for got, expected in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3 * preset.d_rate)


def _reference_r1(critic, real, fake, u, axes):
    """R1 written out here: the mean over examples of ||dD/dx||^2 at the real images."""
    with tf.GradientTape() as inner:
        inner.watch(real)
        total = tf.reduce_sum(critic(real, training=True))
    return tf.reduce_mean(tf.reduce_sum(tf.reshape(inner.gradient(total, real), [BATCH, -1]) ** 2, axis=1))


def _cheap_r1(critic, real, fake, u, axes):
    return double_backprop.input_gradient_penalty(critic, real, losses.r1_penalty)


@pytest.mark.parametrize("model", ["dcgan", "tanh"])
def test_cheap_r1_and_its_gradients_equal_the_plain_formula(model):
    keras.utils.set_random_seed(0)
    critic = _tanh_critic() if model == "tanh" else build_models(get_preset("dcgan", "default"))[1]
    real, fake, u = _inputs(per_element=False)
    expected, expected_grads = _penalty_and_gradients(_reference_r1, critic, real, fake, u, None)
    got, got_grads = _penalty_and_gradients(_cheap_r1, critic, real, fake, u, None)
    assert expected > 0
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for g, e in zip(got_grads, expected_grads):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6 * float(np.abs(e).max()) + 1e-12)
