"""GAN losses, each defined once with its discriminator and generator sides.

Every loss takes the discriminator's raw outputs (logits for the sigmoid
losses, critic scores for the others) on a real and a fake batch and returns
``(d_loss, g_loss)``.  ``D(x) = sigmoid(logit)`` below.
"""

import tensorflow as tf


def _mean(x):
    return tf.reduce_mean(x)


def legacy_raw_log(real_logits, fake_logits):
    """The legacy code's losses, written with raw logs of the sigmoid output.

    d = -mean(log D(x) + log(1 - D(G(z)))),  g = -mean(log D(G(z))).
    Kept bit-for-bit for parity: both become Inf/NaN once D saturates to
    exactly 0 or 1 in float32, which is why ``nonsaturating`` exists.
    """
    d_real, d_fake = tf.sigmoid(real_logits), tf.sigmoid(fake_logits)
    d_loss = -_mean(tf.math.log(d_real) + tf.math.log(1.0 - d_fake))
    g_loss = -_mean(tf.math.log(d_fake))
    return d_loss, g_loss


def _bce(logits, label):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)


def minimax(real_logits, fake_logits):
    """Goodfellow et al.'s original game: d = -V(D, G), g = mean(log(1 - D(G(z)))).

    The generator side saturates: when D confidently rejects fakes the gradient
    of log(1 - D) vanishes.  Computed from logits (log(1 - D) = -softplus(l)).
    """
    d_loss = _mean(_bce(real_logits, 1.0)) + _mean(_bce(fake_logits, 0.0))
    g_loss = -_mean(_bce(fake_logits, 0.0))
    return d_loss, g_loss


def nonsaturating(real_logits, fake_logits):
    """Same D as minimax; G maximises log D(G(z)) instead: g = -mean(log D(G(z))).

    The legacy losses in a numerically stable form (sigmoid cross-entropy on logits).
    """
    d_loss = _mean(_bce(real_logits, 1.0)) + _mean(_bce(fake_logits, 0.0))
    g_loss = _mean(_bce(fake_logits, 1.0))
    return d_loss, g_loss


LOSSES = {
    "legacy": legacy_raw_log,
    "minimax": minimax,
    "nonsaturating": nonsaturating,
}


def get(name):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
