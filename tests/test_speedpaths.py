"""The switch over the speed paths: all on by default, each off on its own or all together, the same function
either way, and each timed by its own row of bench/results/speed.md."""

import ast
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from bench import speed
from genmnist import speedpaths
from genmnist.models import BatchNorm, ImageConv2D, build_models
from genmnist.presets import PRESETS, SPEED_PATHS, Preset
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
    return {"fused_adam": [type(o) for o in (trainer.g_optimizer, trainer.d_optimizer)],
            "fused_batch_norm": {layer.fused for layer in trainer.generator.layers if isinstance(layer, BatchNorm)},
            "joint_d_pass": trainer.joint_d_pass,
            "image_conv": isinstance(trainer.discriminator.get_layer("d_1"), ImageConv2D),
            "double_backprop": speedpaths.double_backprop(trainer.preset)}


ALL_ON = {"fused_adam": [FusedAdam, FusedAdam], "fused_batch_norm": {True}, "joint_d_pass": True,
          "image_conv": True, "double_backprop": True}
ALL_OFF = {"fused_adam": [keras.optimizers.Adam] * 2, "fused_batch_norm": {False}, "joint_d_pass": False,
           "image_conv": False, "double_backprop": False}


def test_every_path_is_on_by_default_and_none_is_the_straight_port(gpus):
    gpus([])
    assert Preset.__dataclass_fields__["speed_paths"].default == SPEED_PATHS
    # no image conv: R1 keeps the reference arithmetic; no joint D pass: least squares is not a sigmoid loss
    assert _paths_taken(_trainer(PRESETS["default"])) == {**ALL_ON, "image_conv": False, "joint_d_pass": False}
    assert _paths_taken(_trainer(PRESETS["default"].replace(r1_weight=0.0)))["image_conv"] is True
    assert _paths_taken(_trainer(PRESETS["default"].replace(speed_paths=()))) == ALL_OFF


@pytest.mark.parametrize("path", SPEED_PATHS)
def test_each_path_turns_off_alone(gpus, path):
    """A preset without one path takes every other (the default preset with the sigmoid loss, which leaves R1
    behind, takes all five)."""
    gpus([])
    taken = _paths_taken(_trainer(speed.without(PRESETS["default"].with_loss("nonsaturating"), path)))
    assert taken == {**ALL_ON, path: ALL_OFF[path]}


def test_each_path_applies_where_its_entry_says(gpus):
    gpus([])
    legacy, wgan_gp = PRESETS["legacy"], PRESETS["default"].with_loss("wgan-gp")
    assert speedpaths.joint_d_pass(legacy) and not speedpaths.joint_d_pass(wgan_gp)  # sigmoid losses only
    assert not speedpaths.joint_d_pass(PRESETS["default"])  # least squares
    assert not speedpaths.image_conv(legacy) and not speedpaths.image_conv(wgan_gp)  # reference arithmetic
    assert speedpaths.double_backprop(wgan_gp)
    assert not speedpaths.double_backprop(Preset.from_dict({**PRESETS["default"].to_dict(), "model": "wgan"}))
    gpus(["GPU:0"])
    assert not speedpaths.image_conv(PRESETS["default"])  # a GPU keeps cuDNN's kernel
    assert speedpaths.fused_adam(PRESETS["default"]) and speedpaths.joint_d_pass(legacy)


def test_an_older_config_without_the_field_takes_the_speed_paths():
    data = PRESETS["default"].to_dict()
    del data["speed_paths"]
    assert Preset.from_dict(data).speed_paths == SPEED_PATHS


@pytest.mark.parametrize("switch, paths", [(True, SPEED_PATHS), (False, ())])
def test_an_older_config_with_the_one_switch_reads_as_all_paths_or_none(switch, paths):
    assert Preset.from_dict({**PRESETS["default"].to_dict(), "speed_paths": switch}).speed_paths == paths


def test_the_paths_survive_json_and_compare_in_one_order():
    preset = PRESETS["default"].replace(speed_paths=("joint_d_pass", "fused_adam", "joint_d_pass"))
    assert preset.speed_paths == ("fused_adam", "joint_d_pass")
    assert Preset.from_dict({**preset.to_dict(), "speed_paths": list(preset.speed_paths)}) == preset


@pytest.mark.parametrize("paths", [("fused_adam", "nope"), "fused_adam", True, ("fused_adam", 1)])
def test_a_speed_path_no_run_knows_is_rejected_by_name(paths):
    with pytest.raises(ValueError, match=re.escape(f"speed_paths={paths!r}")):
        PRESETS["default"].replace(speed_paths=paths)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [PRESETS["default"], PRESETS["default"].with_loss("wgan-gp")],
                         ids=["default", "wgan-gp"])
def test_the_straight_port_trains_the_same_function(preset):
    """One step with the speed paths on and off, from the same weights: the same losses, and the same weight
    updates up to rounding.  Adam's epsilon is raised so that its first step is a smooth function of the
    gradient: at the default 1e-8 it is ~lr * sign(g), which turns the rounding of near-zero gradient
    elements into whole steps."""
    # One critic step per iteration for WGAN-GP too (the penalty's path is the same): its usual 5 compound
    # the paths' rounding through 4 Adam updates before anything is compared, which on one AVX-512 CPU,
    # under a parallel suite, moved the weight updates by 0.8% (the bound below is 0.1%).
    preset = preset.replace(adam_epsilon=1e-3, n_critic=1)
    real = tf.random.uniform([8, 28, 28, 1], *preset.pixel_range, seed=1)
    z = tf.random.normal([8, 100], seed=2)  # one critic step: [batch, z_dim]
    results = []
    for on in (True, False):
        trainer = _trainer(preset.replace(speed_paths=SPEED_PATHS if on else ()))
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
    assert tuple(path.key for path in speedpaths.PATHS) == SPEED_PATHS
    for path in speedpaths.PATHS:
        test_file, _, test_name = path.test.partition("::")
        with open(os.path.join(ROOT, test_file)) as f:
            names = {node.name for node in ast.walk(ast.parse(f.read())) if isinstance(node, ast.FunctionDef)}
        assert not test_name or test_name in names, path.test
        assert os.path.exists(os.path.join(ROOT, path.measured.split(" ")[0])), path.measured


def test_each_path_cites_the_row_bench_speed_times_it_in_on_a_preset_that_takes_it(gpus):
    """bench.speed times each path on a variant whose preset takes it, beside that preset with only it off."""
    gpus([])
    for path in speedpaths.PATHS:
        assert f'"{speed.path_label(path.key)}" row' in path.measured, path.measured
        base = speed.BASES[speed.PATH_BASES[path.key]]
        decides = getattr(speedpaths, path.key)
        assert decides(base) and not decides(speed.without(base, path.key)), path.key
        assert speed.without(base, path.key).speed_paths == tuple(p for p in SPEED_PATHS if p != path.key)


def test_the_committed_speed_results_hold_every_paths_row():
    """Fails until bench/results/speed.md is regenerated (``python -m bench.speed``) after a path is added."""
    with open(os.path.join(ROOT, speedpaths.SPEED)) as f:
        text = f.read()
    rows = [speed.path_label(path.key) for path in speedpaths.PATHS]
    missing = [row for row in rows if f"| {row} |" not in text]
    assert not missing, f"{speedpaths.SPEED} has no row {missing}: rerun python -m bench.speed"
