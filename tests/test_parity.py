"""Parity of legacy_v1 and genmnist at small scale, its ability to fail, and checkpoint conversion.

Runs with oneDNN off (set before TensorFlow is imported, as the parity package does).
"""

import contextlib
import dataclasses
import io
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from genmnist import convert, trained  # noqa: E402
from genmnist.errors import UserError  # noqa: E402
from genmnist.presets import PRESETS  # noqa: E402
from legacy_v1 import parity as legacy_entry  # noqa: E402
from legacy_v1 import predict  # noqa: E402
from legacy_v1.batching import legacy_z  # noqa: E402
from legacy_v1.model import GANModel  # noqa: E402
from parity import checks  # noqa: E402
from parity.inputs import real_pixels  # noqa: E402
from parity.pairs import DcganPair, WganPair  # noqa: E402
from parity.rows import compare, compare_drift, compare_share  # noqa: E402
from parity.stages import stage_forward_losses_gradients, stage_training  # noqa: E402

SMALL_SCALE = ["--batch-size", "8", "--steps", "3", "--seed", "1", "--warmup-d-steps", "3", "--wgan-steps", "2"]


@pytest.fixture(scope="module")
def small_scale_cli():
    """(exit code, printed table, rows) of one small-scale ``python -m legacy_v1.parity`` run."""
    table, out = [], io.StringIO()
    real_run = checks.run
    checks.run = lambda *a, **k: table.extend(real_run(*a, **k)) or table
    try:
        with contextlib.redirect_stdout(out):
            code = legacy_entry.main(SMALL_SCALE)
    finally:
        checks.run = real_run
    return code, out.getvalue(), table


@pytest.mark.slow
@pytest.mark.xdist_group("parity_small_scale")  # one worker runs its fixture
def test_all_stages_pass_at_small_scale(small_scale_cli):
    code, out, rows = small_scale_cli
    failed = [r.line() for r in rows if not r.ok]
    assert code == 0 and not failed, "\n".join(failed)
    assert out.startswith("stage") and f"{len(rows)}/{len(rows)} checks within tolerance" in out
    assert any(line.split()[:2] == ["forward", "G(z)"] for line in out.splitlines())
    stages = [r.stage for r in rows]
    assert stages.count("gradients") == 2 * 22           # both losses x every trainable variable
    assert stages.count("step") == 30 + 2 and stages.count("training") == 30 + 2
    exact = [r for r in rows if r.stage in ("forward", "losses")]
    assert len(exact) == 7 and all(r.max_abs < 1e-6 for r in exact)
    assert stages.count("wgan-gradients") == 2 * 18 and stages.count("wgan-forward") == 3
    assert any(r.quantity == "wgan gradient penalty" for r in rows)
    # WGAN-GP iterations: both losses + 18 variables, teacher-forced and free-running
    assert stages.count("wgan-step") == 18 + 2 and stages.count("wgan-training") == 18 + 2


@pytest.mark.slow
@pytest.mark.xdist_group("parity_small_scale")  # one worker runs its fixture
def test_cli_exits_1_and_names_the_rows_past_tolerance(small_scale_cli, monkeypatch, capsys):
    """The same rows with one gradient past its tolerance: the short table keeps it, the summary names it."""
    _, _, rows = small_scale_cli
    gradient = next(i for i, r in enumerate(rows) if r.stage == "gradients")
    broken = rows[:gradient] + [dataclasses.replace(rows[gradient], ok=False)] + rows[gradient + 1:]
    monkeypatch.setattr(checks, "run", lambda *a, **k: broken)
    assert legacy_entry.main(SMALL_SCALE) == 1
    out = capsys.readouterr().out
    assert f"FAILED: gradients:{rows[gradient].quantity}" in out
    assert f"{len(rows) - 1}/{len(rows)} checks within tolerance" in out
    assert sum("FAIL" in line.split() for line in out.splitlines()) >= 1


def _wgan_step_rows(critic_lr_factor):
    rng = np.random.default_rng(0)
    pair = WganPair(8, 0).ready()
    pair.trainer.d_optimizer.learning_rate.assign(critic_lr_factor * pair.preset.d_rate)
    real = real_pixels(None, 8, rng).reshape(1, 8, 28, 28, 1)
    zs = rng.standard_normal((1, 5, 8, 100)).astype(np.float32)
    us = rng.random((1, 5, 8, 28, 28, 1)).astype(np.float32)
    return stage_training(pair, list(zip(real, zs, us)), forced=True)


@pytest.mark.slow
def test_wgan_step_stage_catches_a_wrong_critic_learning_rate():
    """The teacher-forced WGAN-GP stage fails when v2's critic Adam differs (lr x 2), and its
    loss tolerance still rejects a critic lr only 10% off."""
    assert any(not r.ok and "discriminator" in r.quantity for r in _wgan_step_rows(2.0))
    assert not next(r for r in _wgan_step_rows(1.1) if r.quantity == "wgan d_loss per step").ok


def _pair_and_batch(seed=0, batch=8):
    rng = np.random.default_rng(seed)
    pair = DcganPair(seed).ready()
    real = real_pixels(None, batch, rng)
    return pair, real, legacy_z(rng, batch)


def test_forward_stage_catches_a_weight_off_by_1e_4():
    pair, real, z = _pair_and_batch()
    pair.table["g_w5"].assign_add(np.full((1, 1, 16, 1), 1e-4, np.float32))
    rows = {r.quantity: r for r in stage_forward_losses_gradients(pair, real, z)}
    assert not rows["G(z)"].ok and not rows["D(fake) logit"].ok
    assert rows["D(real) logit"].ok                     # D untouched: real branch still exact


def test_step_stage_catches_trained_offsets_and_a_wrong_learning_rate():
    pair, real, z = _pair_and_batch()
    pair.ready(PRESETS["legacy"].replace(train_bn_offsets=True, learning_rate=4e-4))
    schedule = checks.legacy_schedule([real, real], [z, z], warmup=1)
    rows = {r.quantity: r for r in stage_training(pair, schedule, forced=True)}
    assert not rows["bn1/beta"].ok                      # the legacy split never trains bn offsets
    assert not rows["discriminator/d_w1"].ok            # a 20% smaller step
    assert rows["bn1/moving_mean"].ok


def test_compare_matches_nan_and_rejects_shape_or_value_drift():
    assert compare("losses", "x", [np.nan, 1.0], [np.nan, 1.0]).ok
    assert not compare("losses", "x", [np.nan, 1.0], [0.0, 1.0]).ok
    assert not compare("losses", "x", [1.0], [1.0, 1.0]).ok
    assert not compare("losses", "x", [1.0], [1.0 + 1e-5]).ok


def test_drift_is_relative_to_how_far_training_moved_the_variable():
    start, v1 = np.zeros(4), np.full(4, 1.0)
    close = compare_drift("training", "w", v1, v1 + 0.1, start, (0.5, 0.5))
    assert close.ok and close.max_rel == pytest.approx(0.1)
    assert not compare_drift("training", "w", v1, v1 + 0.6, start, (0.5, 1.0)).ok   # drift past its limit
    assert not compare_drift("training", "w", v1, v1 + 0.1, start, (0.5, 0.05)).ok  # max abs past its limit
    assert not compare_drift("training", "w", start, start + 1e-9, start, (0.5, 0.5)).ok  # moved only on v2


def test_share_comparison_allows_few_elements_off_and_none_far_off():
    v1 = np.zeros(10000)
    few = v1.copy()
    few[:5] = 1e-4
    assert compare_share("step", "w", v1, few, (5e-5, 1e-3), 1e-3).ok
    assert not compare_share("step", "w", v1, few + 6e-5, (5e-5, 1e-3), 1e-3).ok  # most elements off
    few[0] = 2e-3
    assert not compare_share("step", "w", v1, few, (5e-5, 1e-3), 1e-3).ok         # one past the bound


@pytest.fixture(scope="module")
def legacy_checkpoint(tmp_path_factory):
    """A legacy Saver checkpoint (with Adam slots, as legacy_v1.train writes) and its generator's output."""
    out = tmp_path_factory.mktemp("legacy")
    model = GANModel(seed=7)
    z = legacy_z(np.random.default_rng(0), 6)
    with model.session() as sess:
        sess.run(model.init)
        prefix = model.saver.save(sess, str(out / "model"))
        images = sess.run(model.Gz, model.feed(z=z))
    return out, prefix, z, images


def test_convert_round_trip_reproduces_the_legacy_generator(legacy_checkpoint, tmp_path):
    legacy_dir, prefix, z, v1_images = legacy_checkpoint
    run_dir = tmp_path / "run"
    assert convert.main([str(legacy_dir), str(run_dir)]) == 0
    generator, preset = trained.load_generator(str(run_dir))
    assert preset == PRESETS["legacy"]
    v2_images = generator(z, training=False).numpy()    # legacy preset: batch statistics at inference
    np.testing.assert_allclose(v2_images, v1_images, rtol=1e-6, atol=1e-5)

    back = tmp_path / "back"
    assert convert.main(["--to-legacy", str(back), str(run_dir)]) == 0
    np.testing.assert_allclose(predict.generate(predict.resolve_checkpoint(str(back)), z), v1_images,
                               rtol=1e-6, atol=1e-5)
    original, _ = convert.read_legacy(prefix)
    returned, _ = convert.read_legacy(str(back))
    assert sorted(returned) == sorted(original) and len(original) == 30
    assert all(np.array_equal(original[n], returned[n]) for n in original)


def test_convert_lists_unknown_and_missing_names(legacy_checkpoint, tmp_path, capsys):
    _, prefix, _, _ = legacy_checkpoint
    values, _ = convert.read_legacy(prefix)
    values["extra/w"] = np.zeros(3, np.float32)
    del values["g_w1"]
    bad = tmp_path / "bad"
    convert.write_legacy(values, str(bad))
    with pytest.raises(UserError, match=r"unknown variables extra/w; missing variables g_w1"):
        convert.legacy_to_run(str(bad), str(tmp_path / "run"))
    with pytest.raises(SystemExit) as exit_info:
        convert.main([str(bad), str(tmp_path / "run2")])
    assert exit_info.value.code == 2
    assert "g_w1" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


