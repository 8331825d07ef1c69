"""One training step changes exactly the variables it should, in each preset."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from genmnist.loop import Schedule, is_milestone
from genmnist.models import BatchNorm, build_models, legacy_variables
from genmnist.presets import PRESETS
from genmnist.training import FusedAdam, GANTrainer


def _setup(preset_name, batch=8, **fields):
    tf.keras.utils.set_random_seed(0)
    preset = PRESETS[preset_name].replace(**fields)
    generator, discriminator = build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset)
    real = tf.random.uniform([batch, 28, 28, 1], *preset.pixel_range, seed=1)
    z = tf.random.normal([batch, 100], seed=2)
    return trainer, legacy_variables(generator, discriminator), real, z


def _changed(table, step):
    before = {k: v.numpy().copy() for k, v in table.items()}
    step()
    return {k for k, v in table.items() if not np.array_equal(before[k], v.numpy())}


def test_legacy_step_leaves_bn_offsets_and_moving_stats_alone():
    trainer, table, real, z = _setup("legacy")
    changed = _changed(table, lambda: trainer.train_step(real, z))
    expected = {k for k in table if k.startswith(("g_", "discriminator/"))}
    assert changed == expected


def test_default_step_trains_every_variable_and_tracks_moving_stats():
    trainer, table, real, z = _setup("default")
    assert _changed(table, lambda: trainer.train_step(real, z)) == set(table)


def test_discriminator_step_changes_only_the_discriminator():
    trainer, table, real, z = _setup("legacy")
    changed = _changed(table, lambda: trainer.discriminator_step(real, z))
    assert changed == {k for k in table if k.startswith("discriminator/")}


def test_generator_step_uses_the_updated_discriminator():
    """G's loss in train_step is computed against D after its update, as the legacy graph did."""
    trainer, table, real, z = _setup("legacy")
    metrics = trainer.train_step(real, z)
    # A twin trainer that only ran the D step holds exactly the (updated D, old G) pair.
    other, _, _, _ = _setup("legacy")
    other.discriminator_step(real, z)
    fake_logits = other.discriminator(other.generator(z, training=True), training=True)
    _, g_loss = other.loss(fake_logits, fake_logits)
    np.testing.assert_allclose(float(metrics["g_loss"]), float(g_loss), rtol=1e-5)


def test_adam_matches_the_legacy_hyperparameters():
    trainer, _, _, _ = _setup("legacy")
    opt = trainer.d_optimizer
    np.testing.assert_allclose(float(opt.learning_rate), 5e-4, rtol=1e-6)  # stored as float32
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)


def test_milestones_follow_the_legacy_display_cadence():
    assert [i for i in range(2500) if is_milestone(i)] == (
        [0] + list(range(10, 100, 10)) + list(range(100, 1000, 100)) + [1000, 2000])


def test_schedule_runs_each_hook_at_its_cadence():
    s = Schedule(total=25, log_every=10, checkpoint_every=10, sample_every=7, eval_every=20)
    assert [d for d in range(1, 26) if s.log_due(d)] == [10, 20, 25]  # the last step is always logged
    # grids (by iterations done): the milestones 0, 10, 20, every 7th, and the last
    assert [d for d in range(26) if s.grid_due(d)] == [0, 7, 10, 14, 20, 21, 25]
    assert [d for d in range(1, 26) if s.eval_due(d)] == [20, 25]
    assert [d for d in range(1, 26) if s.checkpoint_due(d)] == [10, 20]  # the final one is not periodic
    assert not any(Schedule(25).eval_due(d) for d in range(1, 26))


def test_fused_adam_follows_keras_adam():
    """ResourceApplyAdam computes Keras Adam's update: same weights and slots after several steps."""
    results = []
    for optimizer in (keras.optimizers.Adam, FusedAdam):
        variable = keras.Variable(np.random.default_rng(0).normal(size=(40, 30)).astype("float32"))
        adam = optimizer(5e-4, beta_1=0.5, beta_2=0.99, epsilon=1e-8)
        adam.build([variable])
        step = tf.function(lambda g: adam.apply_gradients([(g, variable)]))
        for k in range(6):
            step(tf.constant(np.random.default_rng(k + 1).normal(size=(40, 30)).astype("float32")))
        results.append([variable.numpy(), adam._momentums[0].numpy(), adam._velocities[0].numpy()])
        assert int(adam.iterations.numpy()) == 6
        ops = {op.type for op in step.get_concrete_function(tf.TensorSpec([40, 30])).graph.get_operations()}
        assert ("ResourceApplyAdam" in ops) == (optimizer is FusedAdam)
    for keras_value, fused_value in zip(*results):
        np.testing.assert_allclose(fused_value, keras_value, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("shape", [(64, 48), (16, 14, 14, 8)])
def test_fused_batch_norm_matches_moments(shape):
    """The fused kernel's output, gradients and moving-statistics update equal the tf.nn.moments path."""
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, size=shape).astype("float32"))
    upstream = tf.constant(np.random.default_rng(2).normal(size=shape).astype("float32"))
    outputs = []
    for fused in (False, True):
        layer = BatchNorm(momentum=0.9, fused=fused)
        layer.build(x.shape)
        layer.beta.assign(np.linspace(-1, 1, shape[-1]).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        outputs.append([y, *tape.gradient(loss, [x, layer.beta]), layer.moving_mean, layer.moving_variance])
    for plain, fused in zip(*outputs):
        np.testing.assert_allclose(np.asarray(fused), np.asarray(plain), rtol=1e-4, atol=2e-5)
    assert abs(float(outputs[1][4][0]) - 1.0) > 0.1  # moving variance moved towards 9


def test_joint_discriminator_pass_gives_the_separate_passes_result():
    """D on concat(real, fake) is the same function as two passes: same losses and updated weights.  Adam's
    epsilon is raised so that its first step is a smooth function of the gradient: at the default 1e-8 it is
    ~lr * sign(g), which turns the rounding of near-zero gradient elements into whole steps."""
    results = []
    for joint in (False, True):
        trainer, _, real, z = _setup("default", loss="nonsaturating", adam_epsilon=1e-3)  # the sigmoid losses take it
        trainer.joint_d_pass = joint
        metrics = trainer.train_step(real, z)
        results.append(([float(metrics[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake")],
                        [v.numpy() for v in trainer.discriminator.trainable_variables]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    for separate, joint in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(joint, separate, rtol=1e-4, atol=1e-6)


def test_sampling_recomputes_statistics_on_a_copy_and_leaves_training_state_alone():
    trainer, table, real, z = _setup("default")
    for _ in range(3):
        trainer.train_step(real, z)
    state = {k: v.numpy().copy() for k, v in table.items()}
    sampler = trainer.inference_generator()
    assert sampler is not trainer.generator
    assert all(np.array_equal(state[k], v.numpy()) for k, v in table.items())  # checkpointed state untouched
    live, copy = trainer.generator.get_layer("bn2"), sampler.get_layer("bn2")
    assert not np.allclose(copy.moving_mean.numpy(), live.moving_mean.numpy())  # lagging averages replaced
    np.testing.assert_array_equal(sampler.get_layer("g_2").kernel.numpy(),  # the weights it samples: G's average
                                  trainer.sampler.get_layer("g_2").kernel.numpy())
    legacy, *_ = _setup("legacy")
    assert legacy.inference_generator() is legacy.sampler  # batch statistics at sampling: nothing to recompute


def _dcgan_trainer(batch=8, **fields):
    tf.keras.utils.set_random_seed(0)
    preset = PRESETS["default"].replace(**fields)
    generator, discriminator = build_models(preset)
    real = tf.random.uniform([batch, 28, 28, 1], *preset.pixel_range, seed=1)
    return GANTrainer(generator, discriminator, preset), real, tf.random.normal([batch, 100], seed=2)


def _r1_by_hand(discriminator, real):
    with tf.GradientTape() as tape:
        tape.watch(real)
        total = tf.reduce_sum(discriminator(real, training=True))
    grads = tape.gradient(total, real).numpy().reshape(len(real), -1)
    return float(np.mean(np.sum(grads ** 2, axis=1)))


@pytest.mark.parametrize("fraction", [1.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_r1_penalty_is_reported_and_taken_on_its_share_of_the_batch(fraction):
    trainer, real, z = _dcgan_trainer(r1_weight=4.0, penalty_fraction=fraction, r1_every=1)  # on this update
    share = real[:int(len(real) * fraction)]
    expected = 4.0 / 2 * _r1_by_hand(trainer.discriminator, share)  # D before the step computes it
    metrics = trainer.discriminator_step(real, z)
    np.testing.assert_allclose(float(metrics["penalty"]), expected, rtol=1e-4)
    assert "penalty" not in _dcgan_trainer(r1_weight=0.0)[0].discriminator_step(real, z)


def test_lazy_r1_is_taken_on_every_nth_d_update_weighted_n_times():
    lazy, real, z = _dcgan_trainer(r1_weight=4.0, r1_every=2)
    doubled = _dcgan_trainer(r1_weight=8.0, r1_every=1)[0]
    due, full = lazy.discriminator_step(real, z), doubled.discriminator_step(real, z)
    assert float(due["penalty"]) == pytest.approx(float(full["penalty"]), rel=1e-6)
    # The due update is the doubled penalty's update (both D start from the same seeded weights).
    for a, b in zip(lazy.discriminator.weights, doubled.discriminator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    assert float(lazy.discriminator_step(real, z)["penalty"]) == 0.0  # skipped: a plain D update
    assert float(lazy.discriminator_step(real, z)["penalty"]) > 0  # due again


def test_two_time_scale_rates_and_linear_decay():
    trainer, real, z = _dcgan_trainer(learning_rate=1e-4, d_learning_rate=4e-4, lr_decay_steps=10,
                                      warmup_d_steps=0)
    assert float(trainer.g_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(trainer.d_optimizer.learning_rate) == pytest.approx(4e-4)
    for _ in range(4):
        trainer.train_step(real, z)
    assert float(trainer.g_optimizer.learning_rate) == pytest.approx(1e-4 * 6 / 10)
    assert float(trainer.d_optimizer.learning_rate) == pytest.approx(4e-4 * 6 / 10)


@pytest.mark.parametrize("preset, pinned", [
    (PRESETS["default"], True),  # R1's double backprop
    (PRESETS["default"].with_loss("wgan-gp"), True),
    (PRESETS["default"].replace(r1_weight=0.0), False),
    (PRESETS["legacy"], False)], ids=["r1", "wgan-gp", "no-penalty", "legacy"])
def test_a_gradient_penalty_run_pins_one_inter_op_thread(preset, pinned, monkeypatch):
    """Same-seed runs with a gradient penalty differed (its gradient sums follow the inter-op threads'
    timing) until seeding pinned one inter-op thread; runs without a penalty keep TF's pool, which is faster."""
    from genmnist import loop
    calls = []
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", calls.append)
    loop.seed_everything(preset, 0)
    assert calls == ([1] if pinned else [])


def test_seeding_turns_off_grappler_dependency_optimizer(monkeypatch):
    """One traced step gave other rounding now and then until seeding turned this Grappler pass off."""
    from genmnist import loop
    options = {}
    monkeypatch.setattr(tf.config.optimizer, "set_experimental_options", options.update)
    loop.seed_everything(PRESETS["legacy"], 0)  # no penalty: nothing else to stub
    assert options == {"dependency_optimization": False}
