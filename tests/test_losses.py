"""Loss values on hand-computed inputs."""

import math

import numpy as np
import tensorflow as tf

from genmnist import losses


def test_legacy_and_nonsaturating_agree_where_the_raw_logs_are_finite():
    real, fake = tf.constant([[2.0], [-1.0]]), tf.constant([[0.5], [-3.0]])
    d_legacy, g_legacy = losses.legacy_raw_log(real, fake)
    d_stable, g_stable = losses.nonsaturating(real, fake)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected_d = -((math.log(sig(2)) + math.log(1 - sig(0.5))) + (math.log(sig(-1)) + math.log(1 - sig(-3)))) / 2
    expected_g = -(math.log(sig(0.5)) + math.log(sig(-3))) / 2
    np.testing.assert_allclose([d_legacy, d_stable], expected_d, rtol=1e-5)
    np.testing.assert_allclose([g_legacy, g_stable], expected_g, rtol=1e-5)


def test_legacy_losses_overflow_when_d_saturates_and_the_stable_ones_do_not():
    real, fake = tf.constant([[100.0]]), tf.constant([[-100.0]])
    _, g_legacy = losses.legacy_raw_log(real, fake)
    _, g_stable = losses.nonsaturating(real, fake)
    assert math.isinf(float(g_legacy))
    np.testing.assert_allclose(float(g_stable), 100.0, rtol=1e-6)


def test_minimax_generator_loss_is_log_one_minus_d():
    fake = tf.constant([[0.0], [1.0]])
    _, g = losses.minimax(tf.constant([[0.0], [0.0]]), fake)
    expected = (math.log(1 - 0.5) + math.log(1 - 1 / (1 + math.exp(-1)))) / 2
    np.testing.assert_allclose(float(g), expected, rtol=1e-6)


def test_unknown_loss_names_the_choices():
    try:
        losses.get("nope")
    except ValueError as err:
        assert "nonsaturating" in str(err)
    else:
        raise AssertionError("no error")


def test_least_squares_wasserstein_and_hinge_on_hand_computed_scores():
    real, fake = tf.constant([[2.0], [0.0]]), tf.constant([[-0.5], [1.5]])
    d, g = losses.lsgan(real, fake)
    np.testing.assert_allclose([d, g], [0.5 * ((1 + 1) / 2 + (0.25 + 2.25) / 2), 0.5 * (2.25 + 0.25) / 2])
    d, g = losses.wasserstein(real, fake)
    np.testing.assert_allclose([d, g], [0.5 - 1.0, -0.5])
    d, g = losses.hinge(real, fake)
    np.testing.assert_allclose([d, g], [(0 + 1) / 2 + (0.5 + 2.5) / 2, -0.5])
    d, g = losses.legacy_wasserstein(real, fake)
    np.testing.assert_allclose([d, g], [1.0 - 0.5, 0.5])


def test_critic_losses_never_apply_a_sigmoid():
    for name in ("lsgan", "wgan", "wgan-gp", "hinge", "legacy-wgan-gp"):
        assert not losses.get(name).sigmoid
    # a huge critic score moves the Wasserstein loss linearly; a sigmoid would have flattened it
    d1, _ = losses.get("wgan")(tf.constant([[100.0]]), tf.constant([[0.0]]))
    d2, _ = losses.get("wgan")(tf.constant([[200.0]]), tf.constant([[0.0]]))
    np.testing.assert_allclose(float(d1 - d2), 100.0)


def _finite_difference_norms(critic, x, axes, eps=1e-2):
    """Central differences of the critic wrt every input element (float64), then the norm over ``axes``."""
    x = x.astype(np.float64)
    grads = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        grads[index] = (critic(plus).sum() - critic(minus).sum()) / (2 * eps)
    return np.sqrt((grads ** 2).sum(axis=tuple(axes)))


def test_gradient_penalty_matches_finite_differences():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4 * 4, 1)).astype(np.float64)

    def critic_np(x):  # a smooth non-linear critic: sum(tanh(x) @ w) per example
        return np.tanh(x.reshape(len(x), -1)) @ w

    def critic_tf(x, training=False):
        return tf.matmul(tf.tanh(tf.reshape(x, [tf.shape(x)[0], -1])), tf.constant(w, tf.float32))

    real = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    fake = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    for u, axes in ((rng.uniform(size=(3, 1, 1, 1)), (1, 2, 3)), (rng.uniform(size=(3, 4, 4, 1)), (1,))):
        u = u.astype(np.float32)
        x_hat = real + u * (fake - real)
        expected = np.mean((_finite_difference_norms(critic_np, x_hat, axes) - 1) ** 2)
        got = losses.gradient_penalty(critic_tf, tf.constant(real), tf.constant(fake), tf.constant(u), list(axes))
        np.testing.assert_allclose(float(got), expected, rtol=1e-4)
