"""The legacy DCGAN-style generator and discriminator as Keras 3 models.

Layer names carry the legacy variable names so the mapping is mechanical:
layer ``g_3`` owns ``g_w3`` (its kernel) and ``g_b3`` (its bias), layer ``bn3``
owns ``bn3/beta`` and the moving statistics, layer ``d_2`` owns
``discriminator/d_w2`` and ``discriminator/d_b2``.  :func:`legacy_variables`
spells that mapping out; parity tests and checkpoint conversion use it.

Shapes follow the legacy graph exactly (see ``docs/legacy.md``).  A Keras
``Conv2DTranspose`` kernel is ``[h, w, out, in]``, the same layout as TF1's
``conv2d_transpose``, so kernels copy across without transposition.
"""

import keras
import tensorflow as tf

from genmnist import distribute, speedpaths
from genmnist.presets import CONTRIB_BN_DECAY, SAMPLING_STATS

Z_DIM = 100
IMAGE_SHAPE = (28, 28, 1)


def _legacy_init():
    """``tf.truncated_normal_initializer(stddev=0.02)``; seeded by ``keras.utils.set_random_seed``."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="genmnist")
class BatchNorm(keras.layers.Layer):
    """Batch norm with the ``tf.contrib.layers.batch_norm`` defaults the legacy code used.

    An offset ``beta`` and no scale, ``epsilon=1e-5``, moments over every axis
    but the last.  Two switches cover the legacy behaviour:

    * ``update_moving_stats=False``: training never touches the moving mean and
      variance (the legacy code never ran ``UPDATE_OPS``).
    * ``inference_stats="batch"``: inference also normalises with the batch's
      own statistics (the legacy code fed ``phase=1`` at sampling).
    """

    def __init__(self, momentum=CONTRIB_BN_DECAY, epsilon=1e-5, update_moving_stats=True,
                 inference_stats="moving", fused=True, **kwargs):
        # Under a mixed policy the input and output stay 16-bit (the fused kernel reads them and computes in
        # float32) and the offset and statistics float32, never cast (genmnist.precision).
        super().__init__(**kwargs)
        if inference_stats not in ("moving", "batch"):
            raise ValueError(f"inference_stats must be 'moving' or 'batch', got {inference_stats!r}")
        self.momentum = momentum
        self.epsilon = epsilon
        self.update_moving_stats = update_moving_stats
        self.inference_stats = inference_stats
        self.fused = fused  # may take TF's fused kernel (genmnist.speedpaths); False: tf.nn.moments, as legacy

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.beta = self.add_weight(name="beta", shape=channels, initializer="zeros", autocast=False)
        # Every replica computes the same (synchronised) statistics, so "mean" aggregation is exact.
        self.moving_mean = self.add_weight(name="moving_mean", shape=channels, initializer="zeros",
                                           trainable=False, aggregation="mean", autocast=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=channels, initializer="ones",
                                               trainable=False, aggregation="mean", autocast=False)

    def call(self, x, training=False):
        if (training or self.inference_stats == "batch") and self.fused and speedpaths.fused_batch_norm_here():
            y, mean, variance = self.normalize_fused(x)
        else:  # in float32 (the casts are no-ops for float32 input)
            x32 = tf.cast(x, tf.float32)
            if not (training or self.inference_stats == "batch"):
                return tf.cast(tf.nn.batch_normalization(
                    x32, self.moving_mean, self.moving_variance, self.beta, None, self.epsilon), x.dtype)
            mean, variance = _moments(x32)
            y = tf.cast(tf.nn.batch_normalization(x32, mean, variance, self.beta, None, self.epsilon), x.dtype)
        if training and self.update_moving_stats:
            decay = self.momentum
            self.moving_mean.assign(self.moving_mean * decay + mean * (1.0 - decay))
            self.moving_variance.assign(self.moving_variance * decay + variance * (1.0 - decay))
        return y

    def normalize_fused(self, x):
        """``x`` normalised by its batch statistics with TF's fused kernel (one op forward, one backward, instead
        of ~10 elementwise ones), and those statistics: mean and biased variance, as the moving averages take
        them.  :class:`BatchNormStatistics` reads them here, so a recompute does not reduce each input twice."""
        shape = tf.shape(x)
        x4 = x if len(x.shape) == 4 else tf.reshape(x, [-1, 1, 1, x.shape[-1]])
        ones = tf.ones_like(self.beta)
        y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x4, ones, self.beta, epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(x4)[:-1]), mean.dtype)
        return tf.reshape(y, shape), mean, unbiased_variance * (count - 1.0) / count

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon,
                "update_moving_stats": self.update_moving_stats,
                "inference_stats": self.inference_stats, "fused": self.fused}


def _moments(x):
    """Mean and (biased) variance over every axis but the last, over the global batch.

    On one device this is ``tf.nn.moments``.  Under a multi-replica strategy the
    sums are all-reduced (synchronised batch norm), so a batch split across
    replicas is normalised exactly as the whole batch would be on one device.
    """
    axes = list(range(len(x.shape) - 1))
    if distribute.single_replica():
        return tf.nn.moments(x, axes)
    context = tf.distribute.get_replica_context()
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
    total, total_sq, count = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes), count])
    mean = total / count
    return mean, tf.maximum(total_sq / count - tf.square(mean), 0.0)


class BatchNormStatistics:
    """Recomputes G's batch-norm statistics for its current weights ("precise BN"); call it again after each
    weight change.  Built once per generator: the noise batches run in one compiled function, traced at the
    first call, so a milestone grid costs one pass over the batches and no model rebuild.

    Sets every BatchNorm's moving mean and variance to the average batch statistics over
    ``batches`` seeded noise batches.  Why: the moving averages mix statistics of the last
    ~1/(1 - momentum) steps' weights, which differ from the final ones, and a weight average
    (``--ema``) never produced its own statistics at all.  Recomputed statistics keep an
    image independent of its batch-mates yet score like batch statistics
    (bench/results/quality-bn-ema.md).  Each layer sees its input as in training (earlier
    layers normalised by their batch's statistics), and the statistics taken are the ones the
    fused kernel normalises with (one reduction per input, bench/results/process_speed.md);
    the update is deterministic for the same weights and arguments.
    """

    def __init__(self, generator, batches=20, batch_size=128, seed=0):
        self.layers = [layer for layer in generator.layers if isinstance(layer, BatchNorm)]
        self.batches = batches
        if self.layers:
            chain = _layer_chain(generator, self.layers[-1])
            z_dim = generator.inputs[0].shape[-1]

            def batch_statistics(z):  # G's layers in training mode up to the last BatchNorm
                x, statistics = z, []
                for layer in chain:
                    if isinstance(layer, BatchNorm):
                        x, mean, variance = layer.normalize_fused(tf.cast(x, layer.compute_dtype))
                        statistics.append(tf.stack([tf.cast(mean, tf.float32), tf.cast(variance, tf.float32)]))
                    else:
                        x = layer(x, training=True)
                return statistics

            @tf.function(autograph=False)
            def averages():
                def body(k, totals):  # one batch per iteration, in order: the sums are deterministic
                    z = tf.random.stateless_normal([batch_size, z_dim], seed=tf.stack([tf.constant(seed, k.dtype), k]))
                    return k + 1, [t + s for t, s in zip(totals, batch_statistics(z))]
                totals = [tf.zeros([2, *layer.moving_mean.shape]) for layer in self.layers]
                return tf.while_loop(lambda k, _: k < batches, body, (tf.constant(0, tf.int64), totals))[1]
            self._averages = averages

    def __call__(self):
        """Assign the statistics of the generator's current weights; returns the BatchNorm layers."""
        if self.layers:
            for layer, (mean, variance) in zip(self.layers, self._averages()):
                layer.moving_mean.assign(mean / self.batches)
                layer.moving_variance.assign(variance / self.batches)
        return self.layers


def _layer_chain(model, last):
    """``model``'s layers after its input, up to and including ``last``, checked to form a chain (each takes the
    previous one's output), so calling them in turn computes what the model computes there."""
    layers = model.layers[1:model.layers.index(last) + 1]
    previous = model.inputs[0]
    for layer in layers:
        if layer.input is not previous:
            raise ValueError(f"{model.name}: layer {layer.name} does not take the previous layer's output")
        previous = layer.output
    return layers


def rewrites_statistics(mode):
    """Whether sampling with ``mode`` (a preset's ``sampling_stats``) rewrites G's moving statistics: a
    trainer then samples from a copy, so training never sees them."""
    return mode == "recomputed"


def _inference_stats(mode):
    """What a BatchNorm normalises with at inference under ``mode``: the batch's own or its moving statistics."""
    return "batch" if mode == "batch" else "moving"


class SamplingStatistics:
    """The batch-norm statistics ``generator`` samples with, for ``mode`` (``presets.SAMPLING_STATS``): the one
    owner of that decision; training grids and exports, sample, evaluate and the benchmarks all apply one.

    'batch': each sampling batch's own (the legacy ``phase=1``); 'moving': the moving averages as trained;
    'recomputed': recomputed for the current weights (:class:`BatchNormStatistics`).  Call it after each
    weight change; it returns the generator.
    """

    def __init__(self, generator, mode):
        if mode not in SAMPLING_STATS:
            raise ValueError(f"sampling statistics must be one of {SAMPLING_STATS}, got {mode!r}")
        self.generator = generator
        self._recompute = BatchNormStatistics(generator) if rewrites_statistics(mode) else None
        for layer in generator.layers:
            if isinstance(layer, BatchNorm):
                layer.inference_stats = _inference_stats(mode)

    def __call__(self):
        if self._recompute:
            self._recompute()
        return self.generator


def build_generator(z_dim=Z_DIM, update_moving_stats=True, inference_stats="moving",
                    bn_momentum=CONTRIB_BN_DECAY, fused_batch_norm=True):
    """z [b, z_dim] -> images [b, 28, 28, 1] in (-1, 1): the legacy 5-layer generator."""
    def bn(i):
        return BatchNorm(momentum=bn_momentum, update_moving_stats=update_moving_stats,
                         inference_stats=inference_stats, fused=fused_batch_norm, name=f"bn{i}")

    z = keras.Input((z_dim,), name="z")
    x = keras.layers.Dense(1024, kernel_initializer=_legacy_init(), bias_initializer=_legacy_init(), name="g_1")(z)
    x = keras.layers.ReLU()(bn(1)(x))
    x = keras.layers.Dense(7 * 7 * 64, kernel_initializer=_legacy_init(), bias_initializer=_legacy_init(),
                           name="g_2")(x)
    x = keras.layers.ReLU()(bn(2)(x))
    x = keras.layers.Reshape((7, 7, 64))(x)
    x = keras.layers.Conv2DTranspose(32, 5, strides=2, padding="same", kernel_initializer=_legacy_init(),
                                     bias_initializer=_legacy_init(), name="g_3")(x)
    x = keras.layers.ReLU()(bn(3)(x))
    x = keras.layers.Conv2DTranspose(16, 5, strides=2, padding="same", kernel_initializer=_legacy_init(),
                                     bias_initializer=_legacy_init(), name="g_4")(x)
    x = keras.layers.ReLU()(bn(4)(x))
    x = keras.layers.Conv2D(1, 1, padding="same", kernel_initializer=_legacy_init(),
                            bias_initializer=_legacy_init(), name="g_5")(x)
    images = keras.layers.Activation("tanh", name="tanh", dtype="float32")(x)  # float32 images, any policy
    return keras.Model(z, images, name="generator")


@keras.saving.register_keras_serializable(package="genmnist")
class ImageConv2D(keras.layers.Conv2D):
    """A stride-1 'same' Conv2D on one-channel images whose float32 gradient to the image is a matmul and
    shifted sums: oneDNN's float32 backward-data kernel for a single input channel runs far below its
    usual rate (its share of a step: bench/results/speed.md).  The output and the kernel and bias
    gradients are the plain layer's ops (same bits); the image gradient is the same sum in another order.
    Other compute dtypes keep TF's gradient (oneDNN's bfloat16 kernel is fast).
    """

    def build(self, input_shape):
        k = self.kernel_size
        if (input_shape[-1] != 1 or self.strides != (1, 1) or self.padding != "same" or k[0] != k[1]
                or k[0] % 2 == 0 or self.dilation_rate != (1, 1) or self.data_format != "channels_last"):
            raise ValueError(f"{self.name}: ImageConv2D takes one channel, stride 1, 'same' padding, an odd "
                             f"square kernel (got {input_shape[-1]} channel(s), strides {self.strides}, "
                             f"padding {self.padding!r}, kernel {k})")
        super().build(input_shape)

    def convolution_op(self, inputs, kernel):
        if self.compute_dtype != "float32":
            return super().convolution_op(inputs, kernel)

        @tf.custom_gradient
        def convolve(x, w):
            def gradient(dy):
                dw = tf.raw_ops.Conv2DBackpropFilter(  # what TF's own Conv2D gradient runs
                    input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME")
                return _image_gradient(dy, w), dw
            return super(ImageConv2D, self).convolution_op(x, w), gradient
        return convolve(inputs, tf.convert_to_tensor(kernel))  # a tensor: the gradient owns no variables


def _image_gradient(dy, kernel):
    """d(sum(dy * conv(x, kernel)))/dx for one-channel x, stride 1, 'same': every output pixel's k*k tap
    values (one matmul over the channels), each shifted back to the input pixel it came from and summed."""
    k, channels = kernel.shape[0], kernel.shape[-1]
    height, width = dy.shape[1], dy.shape[2]
    taps = tf.matmul(tf.reshape(kernel, [k * k, channels]), tf.reshape(dy, [-1, channels]), transpose_b=True)
    half = k // 2
    taps = tf.pad(tf.reshape(taps, [k * k, -1, height, width]), [[0, 0], [0, 0], [half, half], [half, half]])
    # tap (i, j) of the output pixel at (r, c) reads the input pixel (r + i - half, c + j - half)
    shifted = [taps[i * k + j, :, k - 1 - i:k - 1 - i + height, k - 1 - j:k - 1 - j + width]
               for i in range(k) for j in range(k)]
    return tf.add_n(shifted)[..., None]


def _maybe_spectral(layer, spectral_norm):
    """Wrap in spectral normalisation (Miyato et al.) under the layer's own name, so lookups by name still work."""
    if not spectral_norm:
        return layer
    name = layer.name
    layer.name = name + "_inner"
    return keras.layers.SpectralNormalization(layer, name=name, dtype=layer.dtype_policy)


def build_discriminator(spectral_norm=False, fast_image_gradient=False):
    """images [b, 28, 28, 1] -> one raw score per image [b, 1]: the legacy 4-layer average-pooled net.

    ``fast_image_gradient``: the first layer is an :class:`ImageConv2D`, the same function with a faster
    float32 gradient to the images (the generator step's path), summed in another order.

    The score is a logit for the sigmoid losses (the legacy code's probability
    is ``tf.sigmoid(score)``, applied by the loss, never by the model) and a
    critic value for the Wasserstein/hinge/least-squares losses.
    """
    images = keras.Input(IMAGE_SHAPE, name="images")
    sn = lambda layer: _maybe_spectral(layer, spectral_norm)  # noqa: E731
    image_conv = ImageConv2D if fast_image_gradient else keras.layers.Conv2D
    x = sn(image_conv(32, 5, padding="same", activation="relu", kernel_initializer=_legacy_init(),
                      name="d_1"))(images)
    x = keras.layers.AveragePooling2D(2, 2, padding="same")(x)
    x = sn(keras.layers.Conv2D(64, 5, padding="same", activation="relu", kernel_initializer=_legacy_init(),
                               name="d_2"))(x)
    x = keras.layers.AveragePooling2D(2, 2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = sn(keras.layers.Dense(1024, activation="relu", kernel_initializer=_legacy_init(), name="d_3"))(x)
    # float32 scores under a mixed policy too: the losses and the gradient penalty work in float32
    scores = sn(keras.layers.Dense(1, kernel_initializer=_legacy_init(), name="d_4", dtype="float32"))(x)
    return keras.Model(images, scores, name="discriminator")


def _wgan_init():
    """The legacy WGANModel's initialisers: Xavier-uniform weights, biases 0.1."""
    return {"kernel_initializer": keras.initializers.GlorotUniform(),
            "bias_initializer": keras.initializers.Constant(0.1)}


def build_wgan_generator(z_dim=Z_DIM):
    """z -> images in (0, 1): the legacy WGANModel generator (no batch norm, sigmoid output)."""
    z = keras.Input((z_dim,), name="z")
    x = keras.layers.Dense(1024, activation="relu", name="g_1", **_wgan_init())(z)
    x = keras.layers.Dense(7 * 7 * 128, activation="relu", name="g_2", **_wgan_init())(x)
    x = keras.layers.Reshape((7, 7, 128))(x)
    x = keras.layers.Conv2DTranspose(64, 5, strides=2, padding="same", activation="relu", name="g_3",
                                     **_wgan_init())(x)
    x = keras.layers.Conv2DTranspose(32, 5, strides=2, padding="same", activation="relu", name="g_4",
                                     **_wgan_init())(x)
    images = keras.layers.Conv2D(1, 1, padding="same", activation="sigmoid", name="g_5", dtype="float32",
                                 **_wgan_init())(x)  # float32 images under a mixed policy too
    return keras.Model(z, images, name="wgan_generator")


def build_wgan_critic(spectral_norm=False):
    """images -> critic score [b, 1]: the legacy WGANModel critic (strided convs, leaky ReLU 0.2, no sigmoid)."""
    sn = lambda layer: _maybe_spectral(layer, spectral_norm)  # noqa: E731
    lrelu = lambda t: keras.layers.LeakyReLU(0.2)(t)  # noqa: E731
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = lrelu(sn(keras.layers.Conv2D(64, 5, strides=2, padding="same", name="d_1", **_wgan_init()))(images))
    x = lrelu(sn(keras.layers.Conv2D(128, 5, strides=2, padding="same", name="d_2", **_wgan_init()))(x))
    x = keras.layers.Flatten()(x)
    x = lrelu(sn(keras.layers.Dense(1024, name="d_3", **_wgan_init()))(x))
    scores = sn(keras.layers.Dense(1, name="d_4", dtype="float32", **_wgan_init()))(x)  # float32 scores
    return keras.Model(images, scores, name="wgan_critic")


def build_models(preset):
    """(generator, discriminator) for the preset's model, batch norm, spectral norm and speed path settings."""
    if preset.model == "wgan":
        return build_wgan_generator(), build_wgan_critic(preset.spectral_norm)
    generator = build_generator(update_moving_stats=preset.update_moving_stats,
                                inference_stats=_inference_stats(preset.sampling_stats),
                                bn_momentum=preset.bn_momentum, fused_batch_norm=speedpaths.fused_batch_norm(preset))
    return generator, build_discriminator(preset.spectral_norm, speedpaths.image_conv(preset))


def _kernels_and_biases(model, scope, prefix, count):
    """``{scope}{prefix}_w{i}`` and ``{scope}{prefix}_b{i}`` -> layer ``{prefix}_{i}``'s kernel and bias."""
    table = {}
    for i in range(1, count + 1):
        layer = model.get_layer(f"{prefix}_{i}")
        layer = getattr(layer, "layer", layer)  # the layer inside a SpectralNormalization wrapper
        table[f"{scope}{prefix}_w{i}"], table[f"{scope}{prefix}_b{i}"] = layer.kernel, layer.bias
    return table


def legacy_variables(generator, discriminator):
    """Map each legacy ``GANModel`` variable name to the Keras variable that plays its part."""
    table = _kernels_and_biases(generator, "", "g", 5)
    for i in range(1, 5):
        layer = generator.get_layer(f"bn{i}")
        table[f"bn{i}/beta"] = layer.beta
        table[f"bn{i}/moving_mean"] = layer.moving_mean
        table[f"bn{i}/moving_variance"] = layer.moving_variance
    return {**table, **_kernels_and_biases(discriminator, "discriminator/", "d", 4)}


def legacy_wgan_variables(generator, critic):
    """Map each legacy ``WGANModel`` variable name (both networks under their scope) to its Keras variable."""
    return {**_kernels_and_biases(generator, "generator/", "g", 5),
            **_kernels_and_biases(critic, "discriminator/", "d", 4)}
