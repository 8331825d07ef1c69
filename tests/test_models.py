"""The Keras models against docs/legacy.md: names, shapes, parameter counts, init, batch norm."""

import numpy as np
import pytest
import tensorflow as tf

from genmnist.models import (
    BatchNorm,
    BatchNormStatistics,
    ImageConv2D,
    SamplingStatistics,
    build_discriminator,
    build_generator,
    build_models,
    legacy_variables,
)
from genmnist.presets import PRESETS

SPEC_SHAPES = {
    "g_w1": (100, 1024), "g_b1": (1024,), "g_w2": (1024, 3136), "g_b2": (3136,),
    "g_w3": (5, 5, 32, 64), "g_b3": (32,), "g_w4": (5, 5, 16, 32), "g_b4": (16,),
    "g_w5": (1, 1, 16, 1), "g_b5": (1,),
    **{f"bn{i}/{v}": (c,) for i, c in zip(range(1, 5), (1024, 3136, 32, 16))
       for v in ("beta", "moving_mean", "moving_variance")},
    "discriminator/d_w1": (5, 5, 1, 32), "discriminator/d_b1": (32,),
    "discriminator/d_w2": (5, 5, 32, 64), "discriminator/d_b2": (64,),
    "discriminator/d_w3": (3136, 1024), "discriminator/d_b3": (1024,),
    "discriminator/d_w4": (1024, 1), "discriminator/d_b4": (1,),
}


@pytest.fixture(scope="module")
def models():
    tf.keras.utils.set_random_seed(1)
    return build_generator(), build_discriminator()


def test_every_legacy_variable_exists_with_the_spec_shape(models):
    table = legacy_variables(*models)
    assert set(table) == set(SPEC_SHAPES)
    assert {k: tuple(v.shape) for k, v in table.items()} == SPEC_SHAPES


def test_no_variable_is_left_out_of_the_legacy_mapping(models):
    generator, discriminator = models
    mapped = {id(v) for v in legacy_variables(generator, discriminator).values()}
    assert {id(v) for v in generator.variables + discriminator.variables} == mapped


def test_parameter_counts_match_the_spec(models):
    generator, discriminator = models
    g_trainable = sum(int(np.prod(s)) for k, s in SPEC_SHAPES.items()
                      if k.startswith(("g_", "bn")) and k.endswith(("beta",) + tuple("0123456789")))
    assert generator.count_params() == 3_394_513
    assert sum(int(np.prod(v.shape)) for v in generator.trainable_variables) == g_trainable == 3_386_097
    assert discriminator.count_params() == 3_265_409


def test_initialisers_follow_the_legacy_code(models):
    table = legacy_variables(*models)
    for name in ("g_w2", "g_b2", "discriminator/d_w3"):
        values = table[name].numpy()
        assert np.abs(values).max() <= 2 * 0.02 + 1e-7  # truncated at two standard deviations
        assert 0.015 < values.std() < 0.02              # truncated normal(0.02) has std 0.0176
    for i in range(1, 5):
        assert not table[f"discriminator/d_b{i}"].numpy().any()
        assert not table[f"bn{i}/beta"].numpy().any()
        assert (table[f"bn{i}/moving_variance"].numpy() == 1).all()


def test_forward_shapes_and_ranges(models):
    generator, discriminator = models
    images = generator(tf.random.normal([4, 100]), training=True)
    assert images.shape == (4, 28, 28, 1)
    assert float(tf.reduce_max(tf.abs(images))) < 1.0
    assert discriminator(images).shape == (4, 1)


def test_batch_norm_training_uses_batch_moments_and_updates_only_when_asked():
    x = tf.random.normal([64, 3], mean=5.0, stddev=2.0, seed=3)
    frozen = BatchNorm(update_moving_stats=False)
    y = frozen(x, training=True)
    np.testing.assert_allclose(tf.reduce_mean(y, 0), 0, atol=1e-5)
    np.testing.assert_allclose(tf.math.reduce_std(y, 0), 1, atol=1e-3)
    assert not frozen.moving_mean.numpy().any()
    tracking = BatchNorm(momentum=0.9)
    tracking(x, training=True)
    np.testing.assert_allclose(tracking.moving_mean.numpy(), 0.1 * tf.reduce_mean(x, 0), rtol=1e-5)


def test_batch_norm_inference_stats_switch():
    x = tf.random.normal([32, 2], mean=3.0, seed=4)
    moving = BatchNorm()
    batch = BatchNorm(inference_stats="batch")
    # moving statistics start at mean 0 / variance 1: inference leaves x (almost) unchanged
    np.testing.assert_allclose(moving(x, training=False), x / np.sqrt(1 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(batch(x, training=False), batch(x, training=True), rtol=1e-6)


def test_recomputed_batch_norm_stats_are_the_mean_batch_statistics_of_the_current_weights():
    tf.keras.utils.set_random_seed(3)
    generator = build_generator(bn_momentum=0.9)
    for layer in generator.layers:  # weights the moving averages have not seen: offsets moved
        if isinstance(layer, BatchNorm):
            layer.beta.assign(tf.fill(layer.beta.shape, 0.5))
    weights = [w.numpy() for w in generator.trainable_variables]
    layers = BatchNormStatistics(generator, batches=3, batch_size=16, seed=7)()
    assert [layer.name for layer in layers] == ["bn1", "bn2", "bn3", "bn4"]
    # independently: bn3's input in training mode for each noise batch, averaged
    probe = tf.keras.Model(generator.inputs, generator.get_layer("bn3").input)
    expected_mean, expected_var = [], []
    for k in range(3):
        x = probe(tf.random.stateless_normal([16, 100], seed=[7, k]), training=True)
        mean, var = tf.nn.moments(x, [0, 1, 2])
        expected_mean.append(mean)
        expected_var.append(var)
    bn3 = generator.get_layer("bn3")
    np.testing.assert_allclose(bn3.moving_mean.numpy(), np.mean(expected_mean, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn3.moving_variance.numpy(), np.mean(expected_var, 0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(bn3.moving_variance.numpy(), 1.0)  # really replaced
    for before, after in zip(weights, generator.trainable_variables):  # only the statistics change
        np.testing.assert_array_equal(before, after.numpy())
    # inference with them is per image: one z alone gives what it gives inside a batch
    z = tf.random.normal([8, 100], seed=2)
    np.testing.assert_allclose(generator(z[:1], training=False), generator(z, training=False)[:1], atol=1e-6)


@pytest.mark.parametrize("mode", ["batch", "moving", "recomputed"])
def test_sampling_statistics_set_what_the_generator_normalises_with(mode):
    tf.keras.utils.set_random_seed(3)
    generator = build_generator()
    z = tf.random.normal([8, 100], seed=2)
    assert SamplingStatistics(generator, mode)() is generator
    layers = [layer for layer in generator.layers if isinstance(layer, BatchNorm)]
    assert {layer.inference_stats for layer in layers} == {"batch" if mode == "batch" else "moving"}
    recomputed = not np.allclose(generator.get_layer("bn3").moving_variance.numpy(), 1.0)
    assert recomputed == (mode == "recomputed")  # only 'recomputed' replaces the initial moving statistics
    alone, in_batch = generator(z[:1], training=False), generator(z, training=False)[:1]
    assert np.allclose(alone, in_batch, atol=1e-6) == (mode != "batch")  # batch statistics couple the images
    with pytest.raises(ValueError, match="sampling statistics"):
        SamplingStatistics(generator, "average")


def test_recomputing_statistics_refuses_a_generator_whose_layers_are_not_a_chain():
    """The recompute calls G's layers in turn; a branch would make that compute something else."""
    import keras

    z = keras.Input((4,))
    a = keras.layers.Dense(3)(z)
    b = BatchNorm(name="bn")(keras.layers.Dense(3)(z))  # takes z, not the Dense before it
    generator = keras.Model(z, keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="bn|dense"):
        BatchNormStatistics(generator, batches=1, batch_size=2)


@pytest.mark.parametrize("compiled", [False, True])
def test_image_conv_is_the_plain_conv_with_the_image_gradient_summed_in_another_order(compiled):
    """Output, kernel and bias gradients bit for bit; the image gradient (the G step's path) to rounding."""
    tf.keras.utils.set_random_seed(4)
    x = tf.random.uniform([8, 28, 28, 1])
    upstream = tf.random.normal([8, 28, 28, 32])
    layers = [cls(32, 5, padding="same", activation="relu") for cls in (tf.keras.layers.Conv2D, ImageConv2D)]
    for layer in layers:
        layer.build(x.shape)
    layers[1].set_weights(layers[0].get_weights())

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return [y, *tape.gradient(y, [x, layer.kernel, layer.bias], output_gradients=upstream)]
    plain, fast = ((tf.function(run) if compiled else run)(layer) for layer in layers)
    for i in (0, 2, 3):
        np.testing.assert_array_equal(fast[i].numpy(), plain[i].numpy())
    np.testing.assert_allclose(fast[1].numpy(), plain[1].numpy(), rtol=1e-5, atol=1e-6 * np.abs(plain[1]).max())
    assert np.abs(plain[1].numpy()).max() > 0.1  # a real gradient, not zeros
    with pytest.raises(ValueError, match="one channel"):
        ImageConv2D(4, 5, padding="same").build((None, 28, 28, 3))


def test_only_non_legacy_presets_without_a_penalty_take_the_fast_image_gradient(monkeypatch):
    listed = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [] if kind == "GPU" else listed(kind))

    def first_layer(preset):  # on a CPU: tests/test_speedpaths.py covers a GPU and the switch
        return type(build_models(preset)[1].get_layer("d_1"))
    assert first_layer(PRESETS["default"].replace(r1_weight=0.0)) is ImageConv2D
    assert first_layer(PRESETS["legacy"]) is not ImageConv2D  # parity with the legacy graph's sums
    assert first_layer(PRESETS["default"]) is not ImageConv2D  # its R1 penalty
    assert first_layer(PRESETS["default"].with_loss("wgan-gp")) is not ImageConv2D
