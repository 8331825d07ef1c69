"""Mixed precision: 16-bit compute, float32 state; recorded in the run, kept on resume, refused for legacy."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from genmnist import precision, train, trained
from genmnist.models import BatchNorm, build_models
from genmnist.presets import PRESETS, WGAN_PRESETS
from genmnist.training import GANTrainer


def _trainer(name, preset="default", batch=8):
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    keras.utils.set_random_seed(0)
    with precision.policy(name):
        generator, discriminator = build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset)
    real = tf.random.uniform([batch, 28, 28, 1], seed=1)
    z = tf.random.normal([batch, 100], seed=2)
    return trainer, real, z


@pytest.mark.parametrize("preset, atol", [
    (PRESETS["default"], 0.0),
    # the critic's losses pass near 0, where bfloat16's relative rounding needs an absolute floor (set at
    # these rates: the default's faster 5e-4 / 1e-3 move the second step's near-zero G loss past it)
    (PRESETS["default"].with_loss("wgan-gp").replace(n_critic=1, learning_rate=4e-4, d_learning_rate=8e-4), 1e-2),
    (WGAN_PRESETS["default"].replace(n_critic=1), 1e-2)], ids=["default-r1", "dcgan-wgan-gp", "wgan"])
def test_bfloat16_step_gives_the_float32_losses_within_bfloat16_rounding(preset, atol):
    """Gradient penalties included (R1, WGAN-GP on both models: their double backprop runs in bfloat16 under
    ``--precision mixed_bfloat16``); one critic step, so the losses compare before five critic updates
    compound bfloat16's rounding."""
    reference, real, z = _trainer("float32", preset)
    mixed, _, _ = _trainer("mixed_bfloat16", preset)
    for _ in range(2):  # the second step runs on weights the first (16-bit) step updated
        want = {k: float(v) for k, v in reference.train_step(real, z).items()}
        got = {k: float(v) for k, v in mixed.train_step(real, z).items()}
        assert "penalty" in want
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=2e-2, atol=atol, err_msg=name)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # policy() restored the global one


@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_step_keeps_variables_slots_statistics_and_outputs_in_float32(name):
    trainer, real, z = _trainer(name)
    assert trainer.generator.get_layer("g_2").compute_dtype == name.split("_")[1]  # it does compute in 16 bits
    metrics = trainer.train_step(real, z)
    assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()) for v in metrics.values())
    variables = trainer.generator.variables + trainer.discriminator.variables
    slots = [v for o in (trainer.g_optimizer, trainer.d_optimizer) for v in o.variables if "float" in v.dtype]
    assert len(slots) >= 2 * len(trainer.g_variables + trainer.d_variables)
    assert {v.dtype for v in variables + slots} == {"float32"}
    assert trainer.generator(z, training=False).dtype == tf.float32
    assert trainer.discriminator(real, training=True).dtype == tf.float32
    assert trainer.inference_generator()(z, training=False).dtype == tf.float32
    assert isinstance(trainer.g_optimizer, keras.optimizers.LossScaleOptimizer) == (name == "mixed_float16")


def test_auto_picks_bfloat16_only_where_native_and_never_for_legacy(monkeypatch):
    for native, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(precision, "bfloat16_is_native", lambda native=native: native)
        assert precision.resolve("auto", PRESETS["default"]) == expected  # its R1 penalty included
        assert precision.resolve("auto", PRESETS["default"].replace(r1_weight=0.0)) == expected
        assert precision.resolve("auto", PRESETS["default"].with_loss("wgan-gp")) == expected
        assert precision.resolve("auto", PRESETS["legacy"]) == "float32"
        assert precision.resolve("auto", WGAN_PRESETS["legacy"]) == "float32"
    assert precision.resolve("mixed_float16", PRESETS["default"]) == "mixed_float16"


@pytest.mark.parametrize("vendor, flags, native", [
    ("GenuineIntel", {"amx_bf16", "avx512_bf16"}, True), ("GenuineIntel", {"avx512_bf16", "avx512f"}, False),
    ("AuthenticAMD", {"avx512_bf16", "avx512f"}, True), ("AuthenticAMD", {"avx2", "fma"}, False),
    ("SomeOtherVendor", {"amx_bf16", "avx512_bf16"}, False)])
def test_bfloat16_counts_as_native_on_the_cpus_measured_faster_with_it(vendor, flags, native):
    assert precision.cpu_bfloat16_is_native(flags, vendor) == native


def test_cpu_vendor_reads_vendor_id(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: avx512_bf16\n")
    assert precision.cpu_vendor(str(info)) == "AuthenticAMD"
    assert precision.cpu_vendor(str(tmp_path / "none")) == ""


def test_bfloat16_is_not_native_with_onednn_off(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16", "avx512_bf16"})
    monkeypatch.setattr(precision, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [])
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert precision.bfloat16_is_native()
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not precision.bfloat16_is_native()


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\nbugs\t\t: spectre\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "avx512f", "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "none")) == set()


def test_legacy_preset_refuses_mixed_precision_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--preset", "legacy", "--precision", "mixed_bfloat16", "--out", str(tmp_path / "run"),
                    "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genmnist.train: error: --precision mixed_bfloat16") and "\n" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_records_its_precision_and_resume_keeps_it(tmp_path):
    from conftest import write_idx_dir
    write_idx_dir(tmp_path / "data")

    def run(out, steps, *extra):
        return train.main(["--data-dir", str(tmp_path / "data"), "--out", str(out), "--steps", str(steps),
                           "--batch-size", "2", "--warmup-d-steps", "2", "--log-every", "1",
                           "--checkpoint-every", "1", "--no-export", *extra])
    assert run(tmp_path / "whole", 2, "--precision", "mixed_bfloat16") == 0
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["precision"] == "mixed_bfloat16"
    assert run(tmp_path / "part", 1, "--precision", "mixed_bfloat16") == 0
    assert run(tmp_path / "part", 2, "--resume") == 0  # no --precision: the run's own is used
    assert json.loads((tmp_path / "part" / "config.json").read_text())["precision"] == "mixed_bfloat16"
    whole, _ = trained.restore_generator(str(tmp_path / "whole"))
    part, _ = trained.restore_generator(str(tmp_path / "part"))
    for a, b in zip(whole.variables, part.variables):  # a float32 continuation would differ
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("training", [True, False])
def test_mixed_batch_norm_reads_and_writes_16_bits_and_gives_the_float32_layer_rounded(training):
    """No float32 copy of the activations around batch norm: 16-bit input and output, float32 statistics,
    and the numbers of normalising in float32 and rounding (what the layer gave in float32 before)."""
    x = tf.cast(tf.random.normal([64, 7, 7, 32], 1.0, 2.0, seed=3), tf.bfloat16)
    with precision.policy("mixed_bfloat16"):
        mixed = BatchNorm(momentum=0.9)
    plain = BatchNorm(momentum=0.9, dtype="float32")
    y_mixed, y_plain = mixed(x, training=training), plain(tf.cast(x, tf.float32), training=training)
    assert y_mixed.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(y_mixed, tf.float32), tf.cast(tf.cast(y_plain, tf.bfloat16), tf.float32))
    for statistic in ("moving_mean", "moving_variance"):
        assert getattr(mixed, statistic).dtype == "float32"
        np.testing.assert_allclose(getattr(mixed, statistic).numpy(), getattr(plain, statistic).numpy(), rtol=1e-6)
    if training:
        assert not np.allclose(mixed.moving_mean.numpy(), 0.0)  # the update ran
