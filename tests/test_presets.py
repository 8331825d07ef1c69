"""Preset: one field for the sampling statistics, old config.json files still read, bad fields rejected."""

import re

import numpy as np
import pytest

from genmnist import precision, rundir, train, trained
from genmnist.presets import MODELS, PRESETS, Preset


def test_every_preset_survives_its_dict():
    for presets in MODELS.values():
        for preset in presets.values():
            assert Preset.from_dict(preset.to_dict()) == preset


@pytest.mark.parametrize("inference_stats, recompute, expected", [
    ("batch", False, "batch"), ("moving", False, "moving"), ("moving", True, "recomputed")])
def test_a_config_from_before_sampling_stats_reads_as_the_same_sampling(inference_stats, recompute, expected):
    old = PRESETS["default"].to_dict()
    del old["sampling_stats"]
    old.update(inference_stats=inference_stats, recompute_bn_stats=recompute)
    assert Preset.from_dict(old) == PRESETS["default"].replace(sampling_stats=expected)


@pytest.mark.parametrize("changes", [{"learning_rate": 0.0}, {"beta1": 1.0}, {"sampling_stats": "average"},
                                     {"loss": "nope"}, {"n_critic": 0}, {"ema_decay": 1.0},
                                     {"pixel_range": (1.0, -1.0)}, {"label_smoothing": -0.1},
                                     {"r1_weight": -1.0}, {"penalty_fraction": 0.0}, {"penalty_fraction": 1.5},
                                     {"r1_every": 0}, {"ema_warmup": 1.0},
                                     {"d_learning_rate": -1e-4}, {"lr_decay_steps": -1}])
def test_a_field_no_run_could_use_is_rejected_by_name(changes):
    (name, value), = changes.items()
    with pytest.raises(ValueError, match=re.escape(f"{name}={value!r}")):
        PRESETS["default"].replace(**changes)


def test_a_hand_edited_config_with_a_bad_field_is_one_line_and_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    rundir.write_config(str(run), {"preset": {**PRESETS["default"].to_dict(), "learning_rate": -0.1},
                                   "seed": 0, "batch_size": 16, "steps": 4, "data_dir": str(tmp_path)})
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--out", str(run), "--resume", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "learning_rate=-0.1" in err and "\n" not in err


def test_search_flags_set_their_preset_fields(tmp_path):
    args = train.parse_args(["--r1", "5", "--penalty-fraction", "0.25", "--d-learning-rate", "4e-4",
                             "--lr-decay-steps", "3000", "--r1-every", "4", "--beta2", "0.95", "--ema-warmup", "3",
                             "--warmup-d-steps", "0", "--out", str(tmp_path / "run")])
    preset = train._run_config(args)["preset"]
    assert (preset.r1_weight, preset.penalty_fraction, preset.d_learning_rate, preset.lr_decay_steps,
            preset.r1_every, preset.beta2, preset.ema_warmup, preset.warmup_d_steps) == \
        (5.0, 0.25, 4e-4, 3000, 4, 0.95, 3.0, 0)
    assert preset.keeps_reference_arithmetic  # R1's double backprop keeps TF's own image gradient


def test_train_help_reads_the_values_from_the_presets(monkeypatch, capsys):
    monkeypatch.setitem(PRESETS, "legacy", PRESETS["legacy"].replace(learning_rate=0.123, beta1=0.25))
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "dcgan legacy: 0.123" in out and "dcgan legacy: 0.25" in out


def test_a_config_from_before_precision_reads_as_float32(tmp_path):
    rundir.write_config(str(tmp_path), {"preset": PRESETS["default"].to_dict(), "seed": 0})
    assert rundir.read_config(str(tmp_path))["precision"] == "float32"


def test_every_loss_has_a_schedule_and_every_schedule_a_loss():
    from genmnist import losses
    from genmnist.presets import LOSS_SCHEDULES, USER_LOSSES
    assert set(LOSS_SCHEDULES) == set(losses.LOSSES) and set(USER_LOSSES) <= set(LOSS_SCHEDULES)


def test_a_loss_brings_its_schedule_and_drops_the_previous_one():
    wgan = PRESETS["default"].with_loss("wgan")
    assert (wgan.n_critic, wgan.clip, wgan.gp_weight) == (5, 0.01, 0.0)
    assert (wgan.with_loss("hinge").n_critic, wgan.with_loss("hinge").clip) == (1, 0.0)
    with pytest.raises(ValueError, match="nonsaturating"):
        PRESETS["default"].with_loss("nope")


def test_the_default_preset_is_the_searched_recipe():
    """The fields docs/search.md chose (the least-squares loss with the R1 penalty on half of each batch and every
    4th D update, D at twice G's rate, beta1 0 at rates 5e-4 / 1e-3, beta2 0.99, the weight average, rates decayed
    over 10000 iterations, batch 64, a run that fits the budget); the legacy presets keep the legacy run and
    constant rates."""
    default = PRESETS["default"]
    assert (default.loss, default.r1_weight, default.penalty_fraction, default.r1_every, default.learning_rate,
            default.d_learning_rate, default.beta1, default.beta2) == ("lsgan", 5.0, 0.5, 4, 5e-4, 1e-3, 0.0, 0.99)
    assert (default.ema_decay, default.sampling_stats, default.bn_momentum, default.gp_weight) == \
        (0.999, "recomputed", 0.99, 0.0)
    assert (default.lr_decay_steps, default.run_steps, default.run_steps_bfloat16, default.run_batch_size) == \
        (10000, 4000, 6000, 64)
    for presets in MODELS.values():
        assert (presets["legacy"].run_steps, presets["legacy"].run_batch_size) == (10000, 128)
        assert presets["legacy"].lr_decay_steps == 0


def test_another_loss_leaves_the_default_preset_s_r1_behind():
    wgan_gp = PRESETS["default"].with_loss("wgan-gp")
    assert (wgan_gp.r1_weight, wgan_gp.gp_weight, wgan_gp.penalty_fraction) == (0.0, 10.0, 1.0)  # GP on the batch
    assert PRESETS["default"].with_loss("nonsaturating").r1_weight == 0.0  # a loss brings only its own schedule
    args = train.parse_args(["--loss", "hinge", "--r1", "3", "--out", "unused"])
    assert train._run_config(args)["preset"].r1_weight == 3.0  # --r1 after --loss


@pytest.mark.parametrize("argv, expected", [([], (4000, 64)), (["--preset", "legacy"], (10000, 128)),
                                            (["--steps", "7", "--batch-size", "5"], (7, 5))])
def test_run_length_and_batch_come_from_the_preset_unless_given(tmp_path, argv, expected):
    config = train._run_config(train.parse_args([*argv, "--out", str(tmp_path / "run")]))
    assert (config["steps"], config["batch_size"]) == expected


@pytest.mark.slow
def test_the_default_preset_trains_on_tiny_data_and_samples_its_average(idx_dir, tmp_path):
    from conftest import train_tiny
    run = tmp_path / "run"
    assert train_tiny(run, idx_dir, "--no-export", steps=2) == 0
    config = rundir.read_config(str(run))
    # The default preset but for the tiny run's shorter D-only warm-up (conftest.TINY).
    assert config["preset"].replace(warmup_d_steps=PRESETS["default"].warmup_d_steps) == PRESETS["default"]
    assert config["batch_size"] == 16
    average, _ = trained.restore_generator(str(run), True)
    own, _ = trained.restore_generator(str(run), False)
    assert any(not np.array_equal(a, b) for a, b in zip(average.get_weights(), own.get_weights()))
    assert all(np.isfinite(w).all() for w in average.get_weights())
    resumed = train.parse_args(["--out", str(run), "--resume"])
    assert train._run_config(resumed)["steps"] == 2  # a resume without --steps keeps the run's length


def test_the_default_run_is_longer_where_it_trains_in_bfloat16(monkeypatch, tmp_path):
    """The same budget holds more of bfloat16's faster steps: --steps defaults by the resolved precision,
    and a --steps given wins."""
    default = PRESETS["default"]
    for native, steps in ((True, default.run_steps_bfloat16), (False, default.run_steps)):
        monkeypatch.setattr(precision, "bfloat16_is_native", lambda native=native: native)
        assert train._run_config(train.parse_args(["--out", str(tmp_path / "a")]))["steps"] == steps
    forced = train._run_config(train.parse_args(["--out", str(tmp_path / "b"), "--precision", "float32"]))
    given = train._run_config(train.parse_args(["--out", str(tmp_path / "c"), "--steps", "123"]))
    assert (forced["steps"], given["steps"]) == (default.run_steps, 123)
    assert PRESETS["legacy"].default_steps("mixed_bfloat16") == PRESETS["legacy"].run_steps  # 0: as float32


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_changed_critic_schedule_keeps_the_default_runs_d_updates(model):
    """A loss or --n-critic with more critic steps per G step shortens the default run in proportion (the
    budget-sized default would otherwise run 5 times its D updates under --loss wgan-gp), and back."""
    for preset in MODELS[model].values():
        for changed in (preset.with_loss("wgan-gp"), preset.with_loss("lsgan"), preset.replace(n_critic=2)):
            for precision_name in ("float32", "mixed_bfloat16"):
                before, after = preset.default_steps(precision_name), changed.default_steps(precision_name)
                assert after == round(before * preset.n_critic / changed.n_critic), (preset.name, changed.n_critic)
        assert preset.replace(n_critic=2).replace(n_critic=preset.n_critic) == preset
        assert preset.replace(n_critic=preset.n_critic, learning_rate=1e-3).run_steps == preset.run_steps


def test_wgan_gp_on_the_default_preset_runs_a_fifth_of_its_iterations(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "bfloat16_is_native", lambda: True)
    config = train._run_config(train.parse_args(["--out", str(tmp_path / "a"), "--loss", "wgan-gp"]))
    assert config["precision"] == "mixed_bfloat16" and config["preset"].n_critic == 5
    assert config["steps"] * 5 == PRESETS["default"].run_steps_bfloat16
    given = train._run_config(train.parse_args(["--out", str(tmp_path / "b"), "--loss", "wgan-gp", "--steps", "9"]))
    assert given["steps"] == 9
