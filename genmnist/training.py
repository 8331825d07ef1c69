"""The GAN update: one discriminator step, then one generator step on the same z.

``GANTrainer`` owns the two optimizers and the compiled (``tf.function``)
steps; ``genmnist.loop`` owns everything around them (data, schedule,
checkpoints, logging).  The step runs the generator forward once: its output
feeds the D update (gradient stopped) and then, under the generator's tape,
the updated D, which is exactly what the legacy graph computed with two
``Session.run`` calls and two identical generator passes.
"""

import keras
import tensorflow as tf

from genmnist import double_backprop, losses, precision, speedpaths
from genmnist.models import BatchNorm, SamplingStatistics, rewrites_statistics


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


class FusedAdam(keras.optimizers.Adam):
    """Keras Adam whose per-variable update is TF's fused ``ResourceApplyAdam`` kernel.

    Same formula, slots and checkpoint layout as ``keras.optimizers.Adam`` (the
    kernel TF1's AdamOptimizer ran), but one op per variable instead of about ten
    elementwise ones, each a pass over memory (a speed path: genmnist.speedpaths).
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class WeightAverage:
    """An exponential moving average of G's weights (``--ema``): what a run samples and exports from.

    Training never reads it, so one run measures G with and without it.
    """

    def __init__(self, generator, decay, strategy, warmup):
        self.generator, self.decay, self.warmup = generator, decay, warmup
        with strategy.scope():
            self.average = keras.models.clone_model(generator)
        self.restart()

    def restart(self):
        """Start from G's current weights."""
        self.average.set_weights(self.generator.get_weights())

    def update(self, g_steps):
        """Average the trainable weights; copy the batch-norm moving statistics as they are.

        The decay warms up as ``tf.train.ExponentialMovingAverage(num_updates=t)`` does with ``warmup`` 10:
        min(decay, (1 + t) / (warmup + t)) after G step t, so early on the average follows G
        instead of holding the random initial weights for ~1/(1 - decay) steps.  Until the decay
        caps it, the average spans about t / (warmup - 1) steps: a smaller ``warmup``, a longer one.
        """
        t = tf.cast(g_steps, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (self.warmup + t))
        for average, live in zip(self.average.trainable_variables, self.generator.trainable_variables):
            average.assign(decay * average + (1.0 - decay) * live)
        for average, live in zip(self.average.non_trainable_variables, self.generator.non_trainable_variables):
            average.assign(live)


class GANTrainer:
    """Optimizers plus the compiled steps for one (generator, discriminator, preset) triple."""

    def __init__(self, generator, discriminator, preset, seed=0, strategy=None):
        """Build the models under ``strategy.scope()`` first when a strategy is given.

        Under a multi-replica strategy each replica takes a slice of the global
        batch; losses are divided by the replica count because the optimizer sums
        gradients across replicas, so the update equals the single-device one.
        """
        self.strategy = strategy or tf.distribute.get_strategy()
        self.loss_scale = 1.0 / self.strategy.num_replicas_in_sync
        self.generator = generator
        self.discriminator = discriminator
        self.preset = preset
        self.loss = losses.get(preset.loss)
        # One D pass over concat(real, fake) instead of two: same function, fewer and larger ops
        # (a speed path; genmnist.speedpaths says for which losses).
        self.joint_d_pass = speedpaths.joint_d_pass(preset)
        self.g_variables = generator_variables(generator, preset.train_bn_offsets)
        self.d_variables = list(discriminator.trainable_variables)
        with self.strategy.scope():
            self.g_optimizer = self.adam(self.g_variables, preset.learning_rate)
            self.d_optimizer = self.adam(self.d_variables, preset.d_rate, updates_per_g_step=preset.n_critic)
        # Draws the gradient-penalty interpolation weights for the whole global batch, outside the
        # replicas (one stream, so a split batch gets the weights one device would); checkpointed.
        self.rng = tf.random.Generator.from_seed(seed)
        # Iterations done, counted inside train_step with the updates they count: an interrupt lands between
        # steps, never between a step's updates and its count (a checkpoint saved then resumes exactly).
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.loss_options = {}
        if preset.label_smoothing:
            if preset.loss not in ("minimax", "nonsaturating"):
                raise ValueError("label smoothing applies to the minimax and nonsaturating losses only")
            self.loss_options["real_label"] = 1.0 - preset.label_smoothing
        # What samples are drawn from: G itself, or a moving average of its weights.
        self.ema = WeightAverage(generator, preset.ema_decay, self.strategy, preset.ema_warmup) if preset.ema_decay \
            else None
        self.sampler = self.ema.average if self.ema else generator
        self._sampling = None  # inference_generator()'s SamplingStatistics, made at its first call
        # Each takes (real, z[, u]): u, the gradient penalty's interpolation weights for the whole global
        # batch (see _interpolation_weights), is drawn from self.rng unless given (the parity harness
        # feeds the legacy graph's).
        # Without AutoGraph: the steps branch with tf.cond already, and converting them (Keras' layers and
        # optimizers included) doubles a process's first trace of them.
        self.discriminator_step = tf.function(
            lambda real, z, u=None: self._on_replicas(self._discriminator_step, real, z, u), autograph=False)
        self.train_step = tf.function(self._distributed_train_step, autograph=False)

    def inference_generator(self):
        """What grids, evaluations and exports draw from: the sampler, in float32, with the statistics the
        preset samples with (:class:`SamplingStatistics`).  Where those would rewrite the sampler's
        statistics, or it trains in mixed precision, a float32 copy made at the first call takes the
        sampler's weights at each call (so it is the same object), and the training state stays untouched."""
        mode = self.preset.sampling_stats
        if self._sampling is None:
            copy = rewrites_statistics(mode) or precision.of(self.sampler) != precision.FLOAT32
            self._sampling = SamplingStatistics(precision.float32_clone(self.sampler) if copy else self.sampler, mode)
        if self._sampling.generator is not self.sampler:
            for target, source in zip(self._sampling.generator.variables, self.sampler.variables):
                target.assign(source)
        return self._sampling()

    def sync_sampler(self):
        """Start the weight average from G's current weights (after G's weights were replaced)."""
        if self.ema:
            self.ema.restart()

    def _on_replicas(self, step, real, z, u=None):
        """Run ``step`` on every replica's slice of the batch; average the reported metrics."""
        if u is None and self.preset.gp_weight:
            u = self._interpolation_weights(real)
        per_replica = self.strategy.run(step, args=(real, z, u))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in per_replica.items()}

    def _distributed_train_step(self, real, z, u=None):
        metrics = self._on_replicas(self._train_step, real, z, u)
        if self.ema:
            self.ema.update(self.g_optimizer.iterations)  # in cross-replica context: one update of the mirror
        self.step.assign_add(1)
        return metrics

    def adam(self, variables, learning_rate, updates_per_g_step=1):
        """The preset's Adam for ``variables``, slots built: :class:`FusedAdam` where the preset takes it.

        With ``lr_decay_steps`` the rate falls linearly to 0 over that many G steps, counted in this
        optimizer's own updates (``updates_per_g_step`` per G step; D's warm-up steps count too)."""
        p = self.preset
        if p.lr_decay_steps:
            learning_rate = keras.optimizers.schedules.PolynomialDecay(
                learning_rate, p.lr_decay_steps * updates_per_g_step, end_learning_rate=0.0)
        optimizer = FusedAdam if speedpaths.fused_adam(p) else keras.optimizers.Adam
        optimizer = optimizer(learning_rate, beta_1=p.beta1, beta_2=p.beta2, epsilon=p.adam_epsilon)
        optimizer = precision.with_loss_scaling(optimizer, precision.of(self.generator))
        optimizer.build(variables)  # create slots now, not inside the traced step
        return optimizer

    def _interpolation_weights(self, real):
        """u ~ U(0, 1) for every D step of this call and every example of the global batch.

        [n_critic, batch, 1, 1, 1], or per element [n_critic, batch, 28, 28, 1] for the
        legacy WGANModel's penalty.  Drawn in cross-replica context on every worker alike (same
        seed, same draws); each replica slices its part.  Replicas hold equal slices of the batch.
        """
        local = self.strategy.experimental_local_results(real)
        batch = tf.shape(local[0])[0] * self.strategy.num_replicas_in_sync
        per_example = tf.shape(local[0])[1:] if self.preset.legacy_gradient_penalty else [1, 1, 1]
        return self.rng.uniform(tf.concat([[self.preset.n_critic, batch], per_example], 0))

    def _replica_slice(self, u, real):
        """This replica's rows of ``u``: replicas (over all workers) take consecutive slices of the batch."""
        context = tf.distribute.get_replica_context()
        start = context.replica_id_in_sync_group * tf.shape(real)[0]
        return u[:, start:start + tf.shape(real)[0]]

    def _penalty(self, real, fake, u):
        legacy = self.preset.legacy_gradient_penalty  # legacy: norm over axis 1 only, no epsilon
        axes, epsilon = ([1], 0.0) if legacy else ([1, 2, 3], losses.GP_NORM_EPSILON)
        penalty = self._penalties().gradient_penalty
        real, fake, u = self._penalty_share(real, fake, u)
        return self.preset.gp_weight * penalty(self.discriminator, real, fake, u, axes, epsilon)

    def _r1(self, real):
        """gamma / 2 mean ||grad_x D(x)||^2 over (a share of) the real batch."""
        (real,) = self._penalty_share(real)
        return self.preset.r1_weight / 2 * self._penalties().input_gradient_penalty(
            self.discriminator, real, losses.r1_penalty)

    def _lazy_r1(self, real):
        """R1 on every ``r1_every``-th D update only, weighted that many times (StyleGAN2's lazy
        regularisation): [penalty, its gradient for each of D's variables], zeros on the other updates.

        R1 is the costliest part of a D step and changes slowly, so D gets the same penalty on average
        at about 1/N of its cost.  Its gradient is taken apart from the GAN loss's, inside the branch,
        because TF cannot differentiate through a cond whose branch holds the double backprop."""
        every = self.preset.r1_every

        def penalty_and_gradients():
            with tf.GradientTape() as tape:
                penalty = every * self._r1(real)
                scaled = self.d_optimizer.scale_loss(penalty * self.loss_scale)
            grads = tape.gradient(scaled, self.d_variables)
            # Zeros for the variables R1 does not reach (D's last bias), made here: the tape's own zeros
            # (UnconnectedGradients.ZERO) fail on Keras 3 variables, whose dtype is a string.
            return [penalty] + [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.d_variables)]

        def nothing():
            return [tf.zeros([], tf.float32)] + [tf.zeros_like(v) for v in self.d_variables]
        due = tf.equal(self.d_optimizer.iterations % every, 0)  # D updates so far, checkpointed with D's Adam
        return tf.cond(due, penalty_and_gradients, nothing)

    def _penalties(self):
        """Where the input-gradient penalties come from: the cheaper double backprop (a speed path) or
        the plain formulas of genmnist.losses; both modules offer the same two functions."""
        return double_backprop if speedpaths.double_backprop(self.preset) else losses

    def _penalty_share(self, *batches):
        """The first ``penalty_fraction`` of each batch's examples (at least one): a cheaper penalty."""
        if self.preset.penalty_fraction == 1:
            return batches
        size = tf.shape(batches[0])[0]
        share = tf.maximum(1, tf.cast(tf.math.round(self.preset.penalty_fraction * tf.cast(size, tf.float32)),
                                      tf.int32))
        return tuple(b[:share] for b in batches)

    def _clip_discriminator(self):
        """WGAN weight clipping, applied once per variable in cross-replica context (mirrored copies stay equal)."""
        bound = self.preset.clip

        def clip_all(strategy):
            for variable in self.d_variables:
                strategy.extended.update(variable.value, lambda v: v.assign(tf.clip_by_value(v, -bound, bound)))
        tf.distribute.get_replica_context().merge_call(clip_all)

    def _update_discriminator(self, real, fake, u=None):
        with tf.GradientTape() as tape:
            if self.joint_d_pass:  # one pass over 2b images: larger matmuls, half the op launches
                scores = self.discriminator(tf.concat([real, fake], 0), training=True)
                real_scores, fake_scores = tf.split(scores, 2)
            else:
                real_scores = self.discriminator(real, training=True)
                fake_scores = self.discriminator(fake, training=True)
            d_loss, _ = self.loss(real_scores, fake_scores, **self.loss_options)
            lazy_r1 = self.preset.r1_weight and self.preset.r1_every > 1
            penalties = ([self._penalty(real, fake, u)] if self.preset.gp_weight else []) + \
                ([self._r1(real)] if self.preset.r1_weight and not lazy_r1 else [])
            if penalties:
                d_loss += tf.add_n(penalties)
            scaled = self.d_optimizer.scale_loss(d_loss * self.loss_scale)  # float16: loss scaling
        grads = tape.gradient(scaled, self.d_variables)
        if lazy_r1:
            r1, *r1_grads = self._lazy_r1(real)
            grads = [g + r for g, r in zip(grads, r1_grads)]
            penalties.append(r1)
            d_loss += r1
        penalty = tf.add_n(penalties) if penalties else None
        self.d_optimizer.apply_gradients(zip(grads, self.d_variables))
        if self.preset.clip:
            self._clip_discriminator()
        report = tf.sigmoid if self.loss.sigmoid else tf.identity  # D(x) as a probability or a critic score
        metrics = {"d_loss": d_loss, "d_real": tf.reduce_mean(report(real_scores)),
                   "d_fake": tf.reduce_mean(report(fake_scores))}
        if penalty is not None:  # the weighted penalties, part of d_loss: the GAN loss is d_loss - penalty
            metrics["penalty"] = penalty
        return metrics, real_scores

    def _discriminator_step(self, real, z, u):
        """A D-only step (the legacy warm-up); ``z`` as for train_step, its first noise batch used."""
        if z.shape.rank == 3:
            z = z[:, 0]
        u = None if u is None else self._replica_slice(u, real)[0]
        metrics, _ = self._update_discriminator(real, self.generator(z, training=True), u)
        return metrics

    def _train_step(self, real, z, u):
        """``n_critic`` D steps on the same real batch, then a G step against the updated D.

        ``z`` is [b, n_critic, z_dim] (or [b, z_dim] when n_critic is 1): one noise
        batch per D step, batch-major so a strategy can split it like the images;
        the G step reuses the last one, as the legacy code did.
        """
        z = z[None] if z.shape.rank == 2 else tf.transpose(z, [1, 0, 2])
        u = [None] * self.preset.n_critic if u is None else self._replica_slice(u, real)
        for i in range(self.preset.n_critic - 1):
            self._update_discriminator(real, self.generator(z[i], training=True), u[i])
        with tf.GradientTape() as tape:
            fake = self.generator(z[-1], training=True)
            with tape.stop_recording():
                metrics, real_scores = self._update_discriminator(real, tf.stop_gradient(fake), u[-1])
            fake_scores = self.discriminator(fake, training=True)
            _, g_loss = self.loss(real_scores, fake_scores)
            scaled = self.g_optimizer.scale_loss(g_loss * self.loss_scale)
        grads = tape.gradient(scaled, self.g_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.g_variables))
        return {**metrics, "g_loss": g_loss}
