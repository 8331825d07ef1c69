"""``GANModel`` and ``WGANModel`` exactly as docs/legacy.md describes them, in tf.compat.v1 graphs.

Each model builds into its own ``tf.Graph`` (never the global default and
never ``disable_eager_execution``), so genmnist's eager/Keras code keeps
working in the same process, which the parity script needs.
``tf.contrib.layers.batch_norm`` is gone from TF 2; :func:`_batch_norm`
reimplements the semantics the legacy graph relied on.
"""

import tensorflow as tf

from legacy_v1 import Z_DIM

v1 = tf.compat.v1


def session_config():
    """A ConfigProto with grappler's arithmetic and remapping rewrites off.

    Those rewrites reorder or fuse float ops, which changes rounding; parity
    wants the graph computed as written.  Harmless for ordinary training.
    """
    from tensorflow.core.protobuf import rewriter_config_pb2
    config = v1.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.arithmetic_optimization = rewriter_config_pb2.RewriterConfig.OFF
    rewrite.remapping = rewriter_config_pb2.RewriterConfig.OFF
    return config


def _batch_norm(x, phase, scope, epsilon=1e-5, decay=0.999):
    """contrib batch_norm defaults: beta offset, no gamma, moments over all axes but the last.

    Moving statistics are only updated by ops placed in ``UPDATE_OPS``, which the
    legacy training loop never ran; ``phase`` (fed 1 everywhere) picks batch statistics.
    """
    channels = x.shape[-1:]
    with v1.variable_scope(scope):
        beta = v1.get_variable("beta", channels, initializer=v1.zeros_initializer())
        moving_mean = v1.get_variable("moving_mean", channels, initializer=v1.zeros_initializer(),
                                      trainable=False)
        moving_variance = v1.get_variable("moving_variance", channels, initializer=v1.ones_initializer(),
                                          trainable=False)
        mean, variance = tf.nn.moments(x, list(range(x.shape.ndims - 1)))
        for var, value in ((moving_mean, mean), (moving_variance, variance)):
            update = v1.assign_sub(var, (var - value) * (1.0 - decay))
            v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, update)
        mean, variance = tf.cond(phase, lambda: (mean, variance), lambda: (moving_mean, moving_variance))
        return tf.nn.batch_normalization(x, mean, variance, beta, None, epsilon)


def _var(name, shape, init):
    return v1.get_variable(name, shape, initializer=init)


class GANModel:
    """The legacy DCGAN: placeholders ``X`` [b, 784] in [0, 1], ``Z`` [b, 100], ``phase`` (bool).

    Attributes mirror the legacy graph: ``Gz``, ``D_real``/``D_real_logits``,
    ``D_fake``/``D_fake_logits``, ``d_loss``, ``g_loss``, ``d_train``, ``g_train``,
    ``d_vars``/``g_vars`` (the name-based split), ``saver`` (every global variable), ``model_vars`` (the
    network's own variables, without optimizer slots).
    """

    def __init__(self, learning_rate=5e-4, beta1=0.9, seed=None, z_dim=Z_DIM):
        self.graph = tf.Graph()
        with self.graph.as_default():
            if seed is not None:
                v1.set_random_seed(seed)
            self.X = v1.placeholder(tf.float32, [None, 784], name="X")
            self.Z = v1.placeholder(tf.float32, [None, z_dim], name="Z")
            self.phase = v1.placeholder(tf.bool, [], name="phase")
            self.Gz = self.generator(self.Z)
            self.D_real, self.D_real_logits = self.discriminator(self.X)
            self.D_fake, self.D_fake_logits = self.discriminator(self.Gz, reuse=True)
            self.d_loss = -tf.reduce_mean(tf.math.log(self.D_real) + tf.math.log(1.0 - self.D_fake))
            self.g_loss = -tf.reduce_mean(tf.math.log(self.D_fake))
            # Model variables (saved by predict/convert) are everything before the optimizers.
            self.model_vars = v1.global_variables()
            tvars = v1.trainable_variables()
            # The legacy split: bn*/beta matches neither, so it is never trained.
            self.d_vars = [v for v in tvars if "d_" in v.name]
            self.g_vars = [v for v in tvars if "g_" in v.name]
            self.d_optimizer = v1.train.AdamOptimizer(learning_rate, beta1=beta1)
            self.g_optimizer = v1.train.AdamOptimizer(learning_rate, beta1=beta1)
            self.d_train = self.d_optimizer.minimize(self.d_loss, var_list=self.d_vars)
            self.g_train = self.g_optimizer.minimize(self.g_loss, var_list=self.g_vars)
            v1.summary.scalar("d_loss", self.d_loss)
            v1.summary.scalar("g_loss", self.g_loss)
            self.summaries = v1.summary.merge_all()
            self.saver = v1.train.Saver()
            self.init = v1.global_variables_initializer()

    def generator(self, z):
        init = v1.truncated_normal_initializer(stddev=0.02)
        x = tf.matmul(z, _var("g_w1", [z.shape[-1], 1024], init)) + _var("g_b1", [1024], init)
        x = tf.nn.relu(_batch_norm(x, self.phase, "bn1"))
        x = tf.matmul(x, _var("g_w2", [1024, 7 * 7 * 64], init)) + _var("g_b2", [7 * 7 * 64], init)
        x = tf.nn.relu(_batch_norm(x, self.phase, "bn2"))
        x = tf.reshape(x, [-1, 7, 7, 64])
        batch = tf.shape(z)[0]
        for i, (size, cin, cout) in ((3, (14, 64, 32)), (4, (28, 32, 16))):
            w = _var(f"g_w{i}", [5, 5, cout, cin], init)
            x = tf.nn.conv2d_transpose(x, w, tf.stack([batch, size, size, cout]), [1, 2, 2, 1], "SAME")
            x = tf.reshape(x, [-1, size, size, cout]) + _var(f"g_b{i}", [cout], init)
            x = tf.nn.relu(_batch_norm(x, self.phase, f"bn{i}"))
        x = tf.nn.conv2d(x, _var("g_w5", [1, 1, 16, 1], init), [1, 1, 1, 1], "SAME") + _var("g_b5", [1], init)
        return tf.tanh(x)

    def discriminator(self, x, reuse=False):
        init = v1.truncated_normal_initializer(stddev=0.02)
        zeros = v1.constant_initializer(0.0)
        with v1.variable_scope("discriminator", reuse=reuse):
            x = tf.reshape(x, [-1, 28, 28, 1])
            for i, (cin, cout) in ((1, (1, 32)), (2, (32, 64))):
                x = tf.nn.conv2d(x, _var(f"d_w{i}", [5, 5, cin, cout], init), [1, 1, 1, 1], "SAME")
                x = tf.nn.relu(x + _var(f"d_b{i}", [cout], zeros))
                x = tf.nn.avg_pool2d(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
            x = tf.reshape(x, [-1, 7 * 7 * 64])
            x = tf.nn.relu(tf.matmul(x, _var("d_w3", [7 * 7 * 64, 1024], init)) + _var("d_b3", [1024], zeros))
            logits = tf.matmul(x, _var("d_w4", [1024, 1], init)) + _var("d_b4", [1], zeros)
            return tf.sigmoid(logits), logits

    def session(self):
        """A session on this model's graph with the parity-safe config."""
        return v1.Session(graph=self.graph, config=session_config())

    def feed(self, real=None, z=None):
        """The legacy feed dict: ``phase`` is 1 everywhere, prediction included."""
        feed = {self.phase: True}
        if real is not None:
            feed[self.X] = real.reshape(-1, 784)
        if z is not None:
            feed[self.Z] = z
        return feed


class WGANModel:
    """The legacy WGAN-GP (batch 64, GP scale 10), including its gradient-penalty bug.

    ``u`` is drawn per element (the whole image batch's shape) and the gradient
    norm is taken over axis 1 only.  ``U`` defaults to that random draw but can
    be fed so parity runs can use identical NumPy inputs.  Variable names
    (``generator/g_w1``..., ``discriminator/d_w1``...) are this port's choice:
    the spec fixes the scopes and shapes, not the leaf names.
    """

    def __init__(self, batch_size=64, learning_rate=1e-4, beta1=0.5, beta2=0.9, gp_scale=10.0,
                 seed=None, z_dim=Z_DIM):
        self.graph = tf.Graph()
        with self.graph.as_default():
            if seed is not None:
                v1.set_random_seed(seed)
            self.X = v1.placeholder(tf.float32, [batch_size, 28, 28, 1], name="X")
            self.Z = v1.placeholder(tf.float32, [batch_size, z_dim], name="Z")
            self.Gz = self.generator(self.Z)
            d_real = self.discriminator(self.X)
            d_fake = self.discriminator(self.Gz, reuse=True)
            self.U = v1.placeholder_with_default(v1.random_uniform(self.X.shape, 0.0, 1.0), self.X.shape, "U")
            x_hat = self.X + self.U * (self.Gz - self.X)
            grad = tf.gradients(self.discriminator(x_hat, reuse=True), [x_hat])[0]
            # The legacy bug: the norm runs over axis 1 (image rows) only, giving [b, 28, 1] "slopes".
            self.slopes = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=1))
            self.gradient_penalty = tf.reduce_mean((self.slopes - 1.0) ** 2)
            self.d_loss = tf.reduce_mean(d_real) - tf.reduce_mean(d_fake) + gp_scale * self.gradient_penalty
            self.g_loss = tf.reduce_mean(d_fake)
            self.model_vars = v1.global_variables()
            self.d_vars = v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, "discriminator")
            self.g_vars = v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, "generator")
            adam = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2)
            self.d_optimizer, self.g_optimizer = v1.train.AdamOptimizer(**adam), v1.train.AdamOptimizer(**adam)
            self.d_train = self.d_optimizer.minimize(self.d_loss, var_list=self.d_vars)
            self.g_train = self.g_optimizer.minimize(self.g_loss, var_list=self.g_vars)
            self.saver = v1.train.Saver()
            self.init = v1.global_variables_initializer()

    def generator(self, z):
        xavier = v1.glorot_uniform_initializer()
        bias = v1.constant_initializer(0.1)
        with v1.variable_scope("generator"):
            x = tf.nn.relu(tf.matmul(z, _var("g_w1", [z.shape[-1], 1024], xavier)) + _var("g_b1", [1024], bias))
            x = tf.nn.relu(tf.matmul(x, _var("g_w2", [1024, 7 * 7 * 128], xavier)) + _var("g_b2", [7 * 7 * 128], bias))
            x = tf.reshape(x, [-1, 7, 7, 128])
            batch = z.shape[0]
            for i, (size, cin, cout) in ((3, (14, 128, 64)), (4, (28, 64, 32))):
                w = _var(f"g_w{i}", [5, 5, cout, cin], xavier)
                x = tf.nn.conv2d_transpose(x, w, [batch, size, size, cout], [1, 2, 2, 1], "SAME")
                x = tf.nn.relu(x + _var(f"g_b{i}", [cout], bias))
            x = tf.nn.conv2d(x, _var("g_w5", [1, 1, 32, 1], xavier), [1, 1, 1, 1], "SAME") + _var("g_b5", [1], bias)
            return tf.sigmoid(x)

    def discriminator(self, x, reuse=False):
        xavier = v1.glorot_uniform_initializer()
        bias = v1.constant_initializer(0.1)
        with v1.variable_scope("discriminator", reuse=reuse):
            for i, (cin, cout) in ((1, (1, 64)), (2, (64, 128))):
                x = tf.nn.conv2d(x, _var(f"d_w{i}", [5, 5, cin, cout], xavier), [1, 2, 2, 1], "SAME")
                x = tf.nn.leaky_relu(x + _var(f"d_b{i}", [cout], bias), 0.2)
            x = tf.reshape(x, [-1, 7 * 7 * 128])
            x = tf.matmul(x, _var("d_w3", [7 * 7 * 128, 1024], xavier)) + _var("d_b3", [1024], bias)
            x = tf.nn.leaky_relu(x, 0.2)
            return tf.matmul(x, _var("d_w4", [1024, 1], xavier)) + _var("d_b4", [1], bias)

    def session(self):
        return v1.Session(graph=self.graph, config=session_config())
