"""GAN losses, each defined once with its discriminator and generator sides.

Every loss takes the discriminator's raw outputs on a real and a fake batch
and returns ``(d_loss, g_loss)``.  For the sigmoid losses the raw output is a
logit and ``D(x) = sigmoid(logit)``; the critic losses (``lsgan``, ``wgan``,
``wgan-gp``, ``hinge``) use the raw score and never pass it through a
sigmoid.  :class:`Loss` records which is which; the schedule each loss brings
(critic steps per G step, weight clipping, gradient penalty) is
``genmnist.presets.LOSS_SCHEDULES``, which needs no TensorFlow.
"""

import dataclasses

import tensorflow as tf


def _mean(x):
    return tf.reduce_mean(x)


def _bce(logits, label):
    """-log sigmoid(l) for label 1, -log(1 - sigmoid(l)) for label 0, computed stably."""
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)


def legacy_raw_log(real, fake):
    """The legacy code's losses, written with raw logs of the sigmoid output.

    d = -mean(log D(x) + log(1 - D(G(z)))),  g = -mean(log D(G(z))).
    Kept bit-for-bit for parity: both become Inf/NaN once D saturates to
    exactly 0 or 1 in float32, which is why ``nonsaturating`` exists.
    """
    d_real, d_fake = tf.sigmoid(real), tf.sigmoid(fake)
    d_loss = -_mean(tf.math.log(d_real) + tf.math.log(1.0 - d_fake))
    g_loss = -_mean(tf.math.log(d_fake))
    return d_loss, g_loss


def minimax(real, fake, real_label=1.0):
    """Goodfellow et al.'s game: d = -V(D, G) = -mean(log D(x)) - mean(log(1 - D(G(z)))), g = mean(log(1 - D(G(z)))).

    G minimises V directly; its gradient vanishes when D confidently rejects
    fakes (log(1 - D) saturates), which is what stalls early training.
    ``real_label < 1`` is one-sided label smoothing (Salimans et al. 2016).
    """
    d_loss = _mean(_bce(real, real_label)) + _mean(_bce(fake, 0.0))
    g_loss = -_mean(_bce(fake, 0.0))
    return d_loss, g_loss


def nonsaturating(real, fake, real_label=1.0):
    """Same D as minimax; G maximises log D(G(z)): g = -mean(log D(G(z))).

    The legacy losses in a numerically stable form (sigmoid cross-entropy on logits).
    ``real_label < 1`` is one-sided label smoothing.
    """
    d_loss = _mean(_bce(real, real_label)) + _mean(_bce(fake, 0.0))
    g_loss = _mean(_bce(fake, 1.0))
    return d_loss, g_loss


def lsgan(real, fake):
    """Least squares (Mao et al.): d = (mean((D(x) - 1)^2) + mean(D(G(z))^2)) / 2, g = mean((D(G(z)) - 1)^2) / 2."""
    d_loss = 0.5 * (_mean(tf.square(real - 1.0)) + _mean(tf.square(fake)))
    g_loss = 0.5 * _mean(tf.square(fake - 1.0))
    return d_loss, g_loss


def wasserstein(real, fake):
    """WGAN (Arjovsky et al.): d = mean(D(G(z))) - mean(D(x)), g = -mean(D(G(z))).

    D is a critic estimating the Wasserstein-1 distance; it must be kept
    1-Lipschitz by weight clipping (``wgan``) or a gradient penalty (``wgan-gp``).
    """
    return _mean(fake) - _mean(real), -_mean(fake)


def hinge(real, fake):
    """Hinge (Lim & Ye; Miyato et al.): d = mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))), g = -mean(D(G(z)))."""
    d_loss = _mean(tf.nn.relu(1.0 - real)) + _mean(tf.nn.relu(1.0 + fake))
    return d_loss, -_mean(fake)


def legacy_wasserstein(real, fake):
    """The legacy WGANModel's sign convention: d = mean(D(x)) - mean(D(G(z))), g = mean(D(G(z)))."""
    return _mean(real) - _mean(fake), _mean(fake)


GP_NORM_EPSILON = 1e-12  # inside the penalty's square root: a zero input gradient gives a finite gradient, not NaN


def input_gradient_penalty(critic, x, value_of_gradient):
    """``value_of_gradient(grad_x sum D(x))``, differentiable by the critic's weights: what a gradient
    penalty (WGAN-GP at interpolates, R1 at real images) is made of."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = critic(x, training=True)
    return value_of_gradient(tape.gradient(scores, x))


def gradient_penalty(critic, real, fake, u, norm_axes, epsilon=0.0):
    """WGAN-GP (Gulrajani et al.): mean((||grad_x D(x_hat)|| - 1)^2), x_hat = x + u (G(z) - x).

    The correct form draws ``u`` per example ([b, 1, 1, 1]) and takes the norm
    over all image axes (1, 2, 3).  The legacy model drew ``u`` per element and
    took the norm over axis 1 only; pass those to reproduce it.  ``epsilon`` is added
    under the norm's square root (the legacy code added none).
    """
    return input_gradient_penalty(critic, interpolates(real, fake, u),
                                  lambda grads: norm_penalty(grads, norm_axes, epsilon))


def r1_penalty(grads):
    """R1 (Mescheder et al. 2018) without its weight: mean ||grad_x D(x)||^2 at real images. It pushes D's
    gradient on the data to zero, the regulariser that makes the sigmoid GAN converge locally."""
    return _mean(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]))


def interpolates(real, fake, u):
    """x_hat = x + u (G(z) - x): the points the gradient penalty is taken at."""
    return real + u * (fake - real)


def norm_penalty(grads, norm_axes, epsilon=0.0):
    """mean((||grads|| - 1)^2), the norm over ``norm_axes``: the penalty given the critic's input gradient;
    ||g|| = sqrt(sum g^2 + epsilon)."""
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=norm_axes) + epsilon)
    return _mean(tf.square(norms - 1.0))


@dataclasses.dataclass(frozen=True)
class Loss:
    fn: callable
    sigmoid: bool                # D's raw output is a logit (report sigmoid(D) as D(x))

    def __call__(self, real, fake, **options):
        return self.fn(real, fake, **options)


LOSSES = {
    "legacy": Loss(legacy_raw_log, sigmoid=True),
    "minimax": Loss(minimax, sigmoid=True),
    "nonsaturating": Loss(nonsaturating, sigmoid=True),
    "lsgan": Loss(lsgan, sigmoid=False),
    "wgan": Loss(wasserstein, sigmoid=False),
    "wgan-gp": Loss(wasserstein, sigmoid=False),
    "hinge": Loss(hinge, sigmoid=False),
    "legacy-wgan-gp": Loss(legacy_wasserstein, sigmoid=False),
}


def get(name):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
