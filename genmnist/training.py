"""The GAN update: one discriminator step, then one generator step on the same z.

``GANTrainer`` owns the two optimizers and the compiled (``tf.function``)
steps; ``genmnist.train`` owns everything around them (data, schedule,
checkpoints, logging).  The step runs the generator forward once: its output
feeds the D update (gradient stopped) and then, under the generator's tape,
the updated D, which is exactly what the legacy graph computed with two
``Session.run`` calls and two identical generator passes.
"""

import keras
import tensorflow as tf

from genmnist import losses
from genmnist.models import BatchNorm


def generator_variables(generator, train_bn_offsets):
    """The variables G's optimizer updates.

    The legacy code picked them by name (``"g_" in name``), which silently left
    the batch-norm offsets ``bn*/beta`` untrained; ``train_bn_offsets=False``
    reproduces that.
    """
    if train_bn_offsets:
        return list(generator.trainable_variables)
    offsets = {id(layer.beta) for layer in generator.layers if isinstance(layer, BatchNorm)}
    return [v for v in generator.trainable_variables if id(v) not in offsets]


class GANTrainer:
    """Optimizers plus the compiled steps for one (generator, discriminator, preset) triple."""

    def __init__(self, generator, discriminator, preset, seed=0):
        self.generator = generator
        self.discriminator = discriminator
        self.preset = preset
        self.loss = losses.get(preset.loss)
        self.g_variables = generator_variables(generator, preset.train_bn_offsets)
        self.d_variables = list(discriminator.trainable_variables)
        self.g_optimizer = self._adam(self.g_variables)
        self.d_optimizer = self._adam(self.d_variables)
        # Draws the gradient-penalty interpolation weights; checkpointed with the run.
        self.rng = tf.random.Generator.from_seed(seed)
        self.discriminator_step = tf.function(self._discriminator_step)
        self.train_step = tf.function(self._train_step)

    def _adam(self, variables):
        p = self.preset
        optimizer = keras.optimizers.Adam(p.learning_rate, beta_1=p.beta1, beta_2=p.beta2,
                                          epsilon=p.adam_epsilon)
        optimizer.build(variables)  # create slots now, not inside the traced step
        return optimizer

    def _penalty(self, real, fake):
        p = self.preset
        if p.legacy_gradient_penalty:  # the legacy WGANModel: u per element, norm over axis 1
            u, axes = self.rng.uniform(tf.shape(real)), [1]
        else:
            u, axes = self.rng.uniform([tf.shape(real)[0], 1, 1, 1]), [1, 2, 3]
        return p.gp_weight * losses.gradient_penalty(self.discriminator, real, fake, u, axes)

    def _update_discriminator(self, real, fake):
        with tf.GradientTape() as tape:
            real_scores = self.discriminator(real, training=True)
            fake_scores = self.discriminator(fake, training=True)
            d_loss, _ = self.loss(real_scores, fake_scores)
            if self.preset.gp_weight:
                d_loss += self._penalty(real, fake)
        grads = tape.gradient(d_loss, self.d_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.d_variables))
        if self.preset.clip:
            for v in self.d_variables:
                v.assign(tf.clip_by_value(v, -self.preset.clip, self.preset.clip))
        report = tf.sigmoid if self.loss.sigmoid else tf.identity  # D(x) as a probability or a critic score
        return {"d_loss": d_loss,
                "d_real": tf.reduce_mean(report(real_scores)),
                "d_fake": tf.reduce_mean(report(fake_scores))}, real_scores

    def _discriminator_step(self, real, z):
        """A D-only step (the legacy warm-up)."""
        metrics, _ = self._update_discriminator(real, self.generator(z, training=True))
        return metrics

    def _train_step(self, real, z):
        """``n_critic`` D steps on the same real batch, then a G step against the updated D.

        ``z`` is [n_critic, b, z_dim] (or [b, z_dim] when n_critic is 1): one noise
        batch per D step; the G step reuses the last one, as the legacy code did.
        """
        if z.shape.rank == 2:
            z = z[None]
        for i in range(self.preset.n_critic - 1):
            self._update_discriminator(real, self.generator(z[i], training=True))
        with tf.GradientTape() as tape:
            fake = self.generator(z[-1], training=True)
            with tape.stop_recording():
                metrics, real_scores = self._update_discriminator(real, tf.stop_gradient(fake))
            fake_scores = self.discriminator(fake, training=True)
            _, g_loss = self.loss(real_scores, fake_scores)
        grads = tape.gradient(g_loss, self.g_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.g_variables))
        return {**metrics, "g_loss": g_loss}
