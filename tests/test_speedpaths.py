"""The one switch over the speed paths: on by default, each path off with it, the same function either way."""

import ast
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from genmnist import speedpaths
from genmnist.models import BatchNorm, ImageConv2D, build_models
from genmnist.presets import PRESETS, Preset
from genmnist.training import FusedAdam, GANTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def gpus(monkeypatch):
    """Set what TensorFlow reports as this machine's GPUs: ``gpus(["GPU:0"])`` or ``gpus([])``."""
    listed = tf.config.list_physical_devices

    def pretend(devices):
        monkeypatch.setattr(tf.config, "list_physical_devices",
                            lambda kind=None: list(devices) if kind == "GPU" else listed(kind))
    return pretend


def _trainer(preset):
    keras.utils.set_random_seed(0)
    return GANTrainer(*build_models(preset), preset, seed=0)


def _paths_taken(trainer):
    """What each speed path decided in a built trainer."""
    return {"fused adam": [type(o) for o in (trainer.g_optimizer, trainer.d_optimizer)],
            "fused batch norm": {layer.fused for layer in trainer.generator.layers if isinstance(layer, BatchNorm)},
            "joint d pass": trainer.joint_d_pass,
            "image conv": isinstance(trainer.discriminator.get_layer("d_1"), ImageConv2D),
            "double backprop": speedpaths.double_backprop(trainer.preset)}


def test_the_switch_is_on_by_default_and_turns_every_path_off(gpus):
    gpus([])
    assert Preset.__dataclass_fields__["speed_paths"].default is True
    assert _paths_taken(_trainer(PRESETS["default"])) == {
        "fused adam": [FusedAdam, FusedAdam], "fused batch norm": {True}, "joint d pass": True,
        "image conv": False, "double backprop": True}  # no image conv: R1 keeps the reference arithmetic
    assert _paths_taken(_trainer(PRESETS["default"].replace(r1_weight=0.0)))["image conv"] is True
    assert _paths_taken(_trainer(PRESETS["default"].replace(speed_paths=False))) == {
        "fused adam": [keras.optimizers.Adam] * 2, "fused batch norm": {False}, "joint d pass": False,
        "image conv": False, "double backprop": False}


def test_each_path_applies_where_its_entry_says(gpus):
    gpus([])
    legacy, wgan_gp = PRESETS["legacy"], PRESETS["default"].with_loss("wgan-gp")
    assert speedpaths.joint_d_pass(legacy) and not speedpaths.joint_d_pass(wgan_gp)  # sigmoid losses only
    assert not speedpaths.image_conv(legacy) and not speedpaths.image_conv(wgan_gp)  # reference arithmetic
    assert speedpaths.double_backprop(wgan_gp)
    assert not speedpaths.double_backprop(Preset.from_dict({**PRESETS["default"].to_dict(), "model": "wgan"}))
    gpus(["GPU:0"])
    assert not speedpaths.image_conv(PRESETS["default"])  # a GPU keeps cuDNN's kernel
    assert speedpaths.fused_adam(PRESETS["default"]) and speedpaths.joint_d_pass(PRESETS["default"])


def test_an_older_config_without_the_field_takes_the_speed_paths():
    data = PRESETS["default"].to_dict()
    del data["speed_paths"]
    assert Preset.from_dict(data).speed_paths


@pytest.mark.slow
@pytest.mark.parametrize("preset", [PRESETS["default"], PRESETS["default"].with_loss("wgan-gp")],
                         ids=["default", "wgan-gp"])
def test_the_straight_port_trains_the_same_function(preset):
    """One step with the speed paths on and off, from the same weights: the same losses, and the same weight
    updates up to rounding.  Adam's epsilon is raised so that its first step is a smooth function of the
    gradient: at the default 1e-8 it is ~lr * sign(g), which turns the rounding of near-zero gradient
    elements into whole steps."""
    preset = preset.replace(adam_epsilon=1e-3)
    real = tf.random.uniform([8, 28, 28, 1], *preset.pixel_range, seed=1)
    z = tf.random.normal([8, preset.n_critic, 100], seed=2) if preset.n_critic > 1 else tf.random.normal([8, 100])
    results = []
    for on in (True, False):
        trainer = _trainer(preset.replace(speed_paths=on))
        variables = trainer.g_variables + trainer.d_variables
        start = [v.numpy() for v in variables]
        metrics = trainer.train_step(real, z)
        results.append(({k: float(v) for k, v in metrics.items()}, [v.numpy() - s for v, s in zip(variables, start)]))
    assert sorted(results[0][0]) == sorted(results[1][0])
    for key, value in results[1][0].items():
        np.testing.assert_allclose(results[0][0][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    fast, plain = (np.concatenate([u.ravel() for u in updates]) for _, updates in results)
    assert np.linalg.norm(plain) > 0 and np.linalg.norm(fast - plain) < 1e-3 * np.linalg.norm(plain)


def test_every_listed_path_names_a_test_and_a_results_file_that_exist():
    for path in speedpaths.PATHS:
        test_file, _, test_name = path.test.partition("::")
        with open(os.path.join(ROOT, test_file)) as f:
            names = {node.name for node in ast.walk(ast.parse(f.read())) if isinstance(node, ast.FunctionDef)}
        assert not test_name or test_name in names, path.test
        assert os.path.exists(os.path.join(ROOT, path.measured.split(" ")[0])), path.measured
