"""The two sides of a parity check: a legacy_v1 graph and genmnist's models with v1's weights copied in.

One :class:`Pair` owns the weight copy, the Adam-slot pairing and reading both sides' values;
:class:`DcganPair` and :class:`WganPair` add what differs: the legacy model, the variable-name
table, one legacy training iteration on both sides, and how a teacher-forced step is judged.
"""

import keras
import numpy as np
import tensorflow as tf

from genmnist.models import build_models, legacy_variables, legacy_wgan_variables
from genmnist.presets import PRESETS, WGAN_PRESETS
from genmnist.training import GANTrainer
from legacy_v1.model import GANModel, WGANModel
from parity.rows import compare, compare_share
from parity.tolerances import (
    STEP_WEIGHT_SHARE,
    TOLERANCES,
    WGAN_STEP_LOSSES,
    WGAN_STEP_SHARE,
    is_adam_weight,
    step_tolerance,
)


class Pair:
    """v1 (a legacy model in its own graph and session) and v2 (genmnist's models of ``preset``), both
    seeded with ``seed``; ``table`` maps each v1 variable name to the Keras variable playing its part."""

    prefix = ""  # what the quantities of this pair's rows start with
    step_loss_tolerance = TOLERANCES["step"]

    def __init__(self, v1, preset, seed, table):
        self.v1, self.preset = v1, preset
        self.v1_vars = {v.name[:-2]: v for v in v1.model_vars}
        self.trained = {v.name[:-2] for v in v1.d_vars + v1.g_vars}
        self.sess = v1.session()
        self.sess.run(v1.init)
        keras.utils.set_random_seed(seed)
        self.generator, self.discriminator = build_models(preset)
        self.table = table(self.generator, self.discriminator)
        self.trainer = None

    def ready(self, preset=None):
        """This pair with v1's weights copied into v2 and v2's trainer built (``preset``: another than the
        pair's, to check that parity fails); returns the pair."""
        self.copy_v1_to_v2()
        self.trainer = GANTrainer(self.generator, self.discriminator, preset or self.preset)
        return self

    def copy_v1_to_v2(self):
        for name, value in self.v1_values().items():
            self.table[name].assign(value)

    def slot_pairs(self):
        """(v1 Adam slot, Keras Adam slot) for m and v of every trained variable, both optimizers."""
        v1, trainer = self.v1, self.trainer
        pairs = []
        for v1_opt, v1_vars, k_opt in ((v1.d_optimizer, v1.d_vars, trainer.d_optimizer),
                                       (v1.g_optimizer, v1.g_vars, trainer.g_optimizer)):
            for var in v1_vars:
                index = k_opt._get_variable_index(self.table[var.name[:-2]])
                pairs += [(v1_opt.get_slot(var, "m"), k_opt._momentums[index]),
                          (v1_opt.get_slot(var, "v"), k_opt._velocities[index])]
        return pairs

    def sync_v2_from_v1(self, slots):
        """Copy v1's weights and Adam moments into v2 (step counts already agree)."""
        self.copy_v1_to_v2()
        for value, (_, keras_slot) in zip(self.sess.run([s for s, _ in slots]), slots):
            keras_slot.assign(value)

    def v1_values(self):
        return self.sess.run(self.v1_vars)

    def v2_values(self):
        return {name: v.numpy() for name, v in self.table.items()}

    def close(self):
        self.sess.close()

    def step_row(self, stage, name, v1_value, v2_value):
        """The teacher-forced row of one variable after one iteration."""
        raise NotImplementedError


class DcganPair(Pair):
    """The legacy ``GANModel`` against genmnist's legacy preset."""

    def __init__(self, seed):
        preset = PRESETS["legacy"]
        v1 = GANModel(learning_rate=preset.learning_rate, beta1=preset.beta1, seed=seed)
        super().__init__(v1, preset, seed, legacy_variables)

    def iterate(self, real, z, d_only):
        """One legacy iteration on both sides: a D step, then (unless ``d_only``) a G step on the same z.
        Returns [(quantity, v1 loss, v2 loss)]."""
        v1, sess, trainer = self.v1, self.sess, self.trainer
        feed = v1.feed(real, z)
        real4 = real.reshape(-1, 28, 28, 1)
        _, d1 = sess.run([v1.d_train, v1.d_loss], feed)
        if d_only:
            m = trainer.discriminator_step(real4, z)
            return [("d_loss per step", d1, m["d_loss"])]
        _, g1 = sess.run([v1.g_train, v1.g_loss], feed)
        m = trainer.train_step(real4, z)
        return [("g_loss per step", g1, m["g_loss"]), ("d_loss per step", d1, m["d_loss"])]

    def step_row(self, stage, name, v1_value, v2_value):
        if is_adam_weight(name):
            rate = self.preset.d_rate if name.startswith("discriminator") else self.preset.learning_rate
            return compare_share(stage, name, v1_value, v2_value, STEP_WEIGHT_SHARE, 2 * rate)
        return compare(stage, name, v1_value, v2_value, step_tolerance(name))


class WganPair(Pair):
    """The legacy ``WGANModel`` against genmnist's legacy WGAN preset (penalty bug included).

    Both sides get the same NumPy interpolation weights u (the legacy per-element draw) at every
    critic step: v2 takes them through ``train_step``'s ``u``.
    """

    prefix = "wgan "
    step_loss_tolerance = WGAN_STEP_LOSSES

    def __init__(self, batch_size, seed):
        p = WGAN_PRESETS["legacy"]
        v1 = WGANModel(batch_size, p.learning_rate, p.beta1, p.beta2, p.gp_weight, seed=seed)
        super().__init__(v1, p, seed, legacy_wgan_variables)

    def iterate(self, real, zs, us):
        """One legacy WGAN iteration on both sides: n_critic critic steps (fresh z and u each, same real
        batch), then a G step on the last z.  Returns [(quantity, v1 loss, v2 loss)], d_loss of the last
        critic step."""
        v1 = self.v1
        for z, u in zip(zs, us):
            _, d1 = self.sess.run([v1.d_train, v1.d_loss], {v1.X: real, v1.Z: z, v1.U: u})
        _, g1 = self.sess.run([v1.g_train, v1.g_loss], {v1.X: real, v1.Z: zs[-1], v1.U: us[-1]})
        m = self.trainer.train_step(tf.constant(real), tf.constant(np.transpose(zs, [1, 0, 2])), tf.constant(us))
        return [("d_loss per step", d1, m["d_loss"]), ("g_loss per step", g1, m["g_loss"])]

    def step_row(self, stage, name, v1_value, v2_value):
        p = self.preset
        rate, steps = (p.d_rate, p.n_critic) if name.startswith("discriminator") else (p.learning_rate, 1)
        return compare_share(stage, self.prefix + name, v1_value, v2_value, WGAN_STEP_SHARE, 2 * rate * steps)
