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
    def __init__(self, generator, discriminator, preset):
        self.generator = generator
        self.discriminator = discriminator
        self.preset = preset
        self.loss_fn = losses.get(preset.loss)
        self.g_variables = generator_variables(generator, preset.train_bn_offsets)
        self.d_variables = list(discriminator.trainable_variables)
        self.g_optimizer = self._adam(self.g_variables)
        self.d_optimizer = self._adam(self.d_variables)
        self.discriminator_step = tf.function(self._discriminator_step)
        self.train_step = tf.function(self._train_step)

    def _adam(self, variables):
        p = self.preset
        optimizer = keras.optimizers.Adam(p.learning_rate, beta_1=p.beta1, beta_2=p.beta2,
                                          epsilon=p.adam_epsilon)
        optimizer.build(variables)  # create slots now, not inside the traced step
        return optimizer

    def _update_discriminator(self, real, fake):
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss, _ = self.loss_fn(real_logits, fake_logits)
        grads = tape.gradient(d_loss, self.d_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.d_variables))
        return {"d_loss": d_loss,
                "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}, real_logits

    def _discriminator_step(self, real, z):
        """A D-only step (the legacy warm-up)."""
        fake = self.generator(z, training=True)
        metrics, _ = self._update_discriminator(real, fake)
        return metrics

    def _train_step(self, real, z):
        """D step, then G step against the updated D, both on the same z."""
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            with tape.stop_recording():
                metrics, real_logits = self._update_discriminator(real, tf.stop_gradient(fake))
            fake_logits = self.discriminator(fake, training=True)
            _, g_loss = self.loss_fn(real_logits, fake_logits)
        grads = tape.gradient(g_loss, self.g_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.g_variables))
        return {**metrics, "g_loss": g_loss}
