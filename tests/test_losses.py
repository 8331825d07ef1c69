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
