"""End to end on tiny data: outputs, resume, seeds, crashes, NaN, sampling and export."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from genmnist import images, loop, rundir, sample, train, trained
from genmnist.models import Z_DIM, build_models

from conftest import TINY, make_tiny_run, train_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A spawned run's length where it must still be running when the test stops it: far more steps than
# run between its first checkpoint and the signal.
UNFINISHABLE = 100000


def run_train(out, data_dir, *extra, steps=12):
    return train_tiny(out, data_dir, *extra, steps=steps)


def weights(run_dir):
    generator, _ = trained.load_generator(str(run_dir))
    return [v.numpy() for v in generator.variables]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """12 iterations with the export."""
    return make_tiny_run(tmp_path_factory, run_train)


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_a_run_writes_samples_gif_checkpoints_logs_and_export(finished_run):
    out, _ = finished_run
    # a grid, its checkpoint and its TensorBoard image carry the number of iterations done
    assert sorted(os.listdir(out / "samples")) == ["step_000000.png", "step_000010.png", "step_000012.png"]
    events = [os.path.join(out / "logs", f) for f in os.listdir(out / "logs")]
    image_steps = [e.step for path in events for e in tf.compat.v1.train.summary_iterator(path)
                   if any(v.tag == "samples" for v in e.summary.value)]
    assert sorted(image_steps) == [0, 10, 12]
    grid = cv2.imread(str(out / "samples" / "step_000012.png"), cv2.IMREAD_GRAYSCALE)
    assert grid.shape == (8 * 30 + 2, 8 * 30 + 2)
    # the last grid is the final generator on the fixed noise, scaled x255 for the preset's range
    generator, preset = trained.load_generator(str(out))
    fixed = images.to_uint8(generator(loop.noise(loop.NUM_SAMPLES, 0, -1), training=False), preset.pixel_range)
    np.testing.assert_array_equal(grid, images.grid(fixed))
    from PIL import Image
    frames = [cv2.imread(str(out / "samples" / f), cv2.IMREAD_GRAYSCALE) for f in sorted(os.listdir(out / "samples"))]
    distinct = 1 + sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))  # Pillow merges repeats
    assert Image.open(out / "progress.gif").n_frames == distinct
    assert rundir.read_config(str(out))["preset"].name == "default"
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "logs"))
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-12")


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(finished_run, tmp_path):
    out, data_dir = finished_run
    part = tmp_path / "part"
    assert run_train(part, data_dir, "--no-export", steps=6) == 0
    assert run_train(part, data_dir, "--resume", "--no-export", steps=12) == 0
    assert_same_weights(weights(part), weights(out))
    for name in ("step_000010.png", "step_000012.png"):
        np.testing.assert_array_equal(cv2.imread(str(part / "samples" / name)),
                                      cv2.imread(str(out / "samples" / name)))


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_other_seed_other_run(finished_run, tmp_path):
    """Same seed, same run is asserted by the resume tests: their first steps are a fresh run of this seed."""
    out, data_dir = finished_run
    assert run_train(tmp_path / "other", data_dir, "--seed", "1", "--no-export") == 0
    finished = weights(out)
    differ = [not np.array_equal(a, b) for a, b in zip(weights(tmp_path / "other"), finished)]
    assert len(differ) == len(finished) and all(differ)


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_refuses_to_overwrite_a_run_without_resume(finished_run, capsys):
    out, data_dir = finished_run
    with pytest.raises(SystemExit) as exit_info:
        run_train(out, data_dir)
    assert exit_info.value.code == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
def test_divergence_stops_with_a_clear_message_and_keeps_a_finite_checkpoint(idx_dir, tmp_path, capsys):
    data_dir = idx_dir
    out = tmp_path / "nan"
    # The legacy raw-log losses hit log(0) once D saturates; at this learning rate, after the legacy
    # preset's own D-only warm-up (not the tiny runs' shorter one), that takes a few steps, so the
    # per-step checkpoints before the blow-up exist and must be finite.
    from genmnist.presets import PRESETS
    warmup = str(PRESETS["legacy"].warmup_d_steps)
    code = run_train(out, data_dir, "--preset", "legacy", "--learning-rate", "0.003", "--log-every", "1",
                     "--checkpoint-every", "1", "--no-export", "--warmup-d-steps", warmup, steps=40)
    assert code == 3
    err = capsys.readouterr().err
    assert "training diverged" in err and "not finite" in err
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert latest is not None and f"last good checkpoint: {latest}" in err
    assert 1 <= int(latest.rsplit("-", 1)[1]) < 40
    generator, discriminator = build_models(rundir.read_config(str(out))["preset"])
    checkpoint = tf.train.Checkpoint(generator=generator, discriminator=discriminator)
    checkpoint.restore(latest).expect_partial().assert_existing_objects_matched()
    for variable in generator.variables + discriminator.variables:
        assert np.isfinite(variable.numpy()).all(), variable.path


def _spawn(out, data_dir, steps, *extra):
    cmd = [sys.executable, "-m", "genmnist.train", "--data-dir", data_dir, "--out", str(out),
           "--steps", str(steps), *TINY, "--checkpoint-every", "2", "--log-every", "2", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _spawn_until_a_checkpoint(out, data_dir, steps, timeout=120):
    """A training process, returned once its first checkpoint is on disk (while it still runs)."""
    proc = _spawn(out, data_dir, steps)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if tf.train.latest_checkpoint(str(out / "checkpoints")):
            return proc
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_sigkill_then_resume_finishes_like_an_uninterrupted_run(finished_run, tmp_path):
    out, data_dir = finished_run
    killed = tmp_path / "killed"
    proc = _spawn_until_a_checkpoint(killed, data_dir, steps=UNFINISHABLE)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL  # still running: the kill ended it
    stopped_at = int(tf.train.latest_checkpoint(str(killed / "checkpoints")).rsplit("-", 1)[1])
    # compared with the finished run, or, where the kill landed past its length, with a longer uninterrupted one
    steps, uninterrupted = (12, out) if stopped_at < 12 else (stopped_at + 2, tmp_path / "uninterrupted")
    if uninterrupted != out:
        assert run_train(uninterrupted, data_dir, "--no-export", steps=steps) == 0
    assert run_train(killed, data_dir, "--resume", "--no-export", steps=steps) == 0
    assert_same_weights(weights(killed), weights(uninterrupted))


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_130(idx_dir, tmp_path):
    data_dir = idx_dir
    interrupted = tmp_path / "interrupted"
    proc = _spawn_until_a_checkpoint(interrupted, data_dir, steps=UNFINISHABLE)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint (interrupted)" in err and "--resume" in err
    reader = tf.train.load_checkpoint(str(interrupted / "checkpoints"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") >= 2


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
@pytest.mark.parametrize("out_name", ["grid.png", "imgs.npz", "folder"])
def test_sample_cli_writes_each_format(finished_run, tmp_path, out_name):
    run, _ = finished_run
    target = str(tmp_path / out_name)
    assert sample.main(["--run", str(run), "--num", "10", "--out", target, "--seed", "5"]) == 0
    generator, preset = trained.load_generator(str(run))
    expected = sample.generate(generator, preset, 10, 5)
    assert expected.dtype == np.uint8 and expected.shape == (10, 28, 28)
    if out_name.endswith(".npz"):
        np.testing.assert_array_equal(np.load(target)["images"], expected)
    elif out_name.endswith(".png"):
        np.testing.assert_array_equal(cv2.imread(target, cv2.IMREAD_GRAYSCALE), images.grid(expected))
    else:
        files = sorted(os.listdir(target))
        assert len(files) == 10
        np.testing.assert_array_equal(cv2.imread(os.path.join(target, files[3]), cv2.IMREAD_GRAYSCALE),
                                      expected[3])


def test_sample_cli_on_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample.main(["--run", str(tmp_path / "none"), "--out", str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_exported_generator_reloads_and_gives_the_same_images(finished_run):
    run, _ = finished_run
    generator, preset = trained.load_generator(str(run))
    z = tf.random.normal([6, Z_DIM], seed=9)
    expected = images.to_uint8(generator(z, training=False), preset.pixel_range)
    reloaded = keras.models.load_model(str(run / "export" / "generator.keras"))
    np.testing.assert_array_equal(images.to_uint8(reloaded(z, training=False), preset.pixel_range), expected)
    served = tf.saved_model.load(str(run / "export" / "saved_model")).signatures["serving_default"](z=z)
    np.testing.assert_array_equal(served["images"].numpy(), expected)
    assert served["images"].dtype == tf.uint8


def test_to_uint8_maps_each_preset_range_onto_0_255():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0], np.float32).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(images.to_uint8(x, (-1.0, 1.0))[0, :, 0], [0, 64, 128, 191, 255, 255])
    # legacy: clip(x * 255, 0, 255)
    np.testing.assert_array_equal(images.to_uint8(x, (0.0, 1.0))[0, :, 0], [0, 0, 0, 128, 255, 255])


@pytest.mark.slow
def test_wgan_gp_resume_restores_the_penalty_rng(idx_dir, tmp_path):
    """The penalty's interpolation weights come from a checkpointed RNG, so resume stays exact.

    Run as subprocesses: the CLI pins TF to one inter-op thread for WGAN-GP before TF
    starts (see genmnist/train.py), which an in-process call cannot do.
    """
    data_dir = idx_dir
    extra = ["--model", "wgan", "--n-critic", "2", "--no-export"]
    for out, steps, more in (("whole", 4, extra), ("part", 2, extra), ("part", 4, ["--resume", "--no-export"])):
        proc = _spawn(tmp_path / out, data_dir, steps, *more)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "may not be bit-repeatable" not in err
    assert_same_weights(weights(tmp_path / "part"), weights(tmp_path / "whole"))
    preset = rundir.read_config(str(tmp_path / "part"))["preset"]
    assert (preset.model, preset.loss, preset.n_critic) == ("wgan", "wgan-gp", 2)


@pytest.mark.slow
def test_eval_every_writes_metrics_to_csv(idx_dir, tmp_path, monkeypatch):
    from conftest import write_idx_dir
    data_dir = idx_dir
    write_idx_dir(data_dir, n=300, seed=1, prefix="t10k")  # the evaluation's real reference
    out = tmp_path / "evaluated"
    assert run_train(out, data_dir, "--eval-every", "6", "--eval-num", "200", "--no-export") == 0
    import csv
    rows = list(csv.DictReader(open(out / "eval.csv")))
    assert [int(r["step"]) for r in rows] == [6, 12]
    for r in rows:
        assert 1.0 - 1e-9 <= float(r["classifier_score"]) <= 10.0 + 1e-9
        assert float(r["frechet_distance"]) >= 0 and 0 <= float(r["precision"]) <= 1
        assert 0 <= int(r["classes_covered"]) <= 10
    # A run killed after evaluating step 15 but before checkpointing it resumes from step 12.
    with open(out / "eval.csv", "a") as f:
        f.write("15,5,5,0.5,0.5,0.1,9\n")
    assert run_train(out, data_dir, "--resume", "--eval-every", "6", "--eval-num", "200", "--no-export",
                     steps=18) == 0
    assert [int(r["step"]) for r in csv.DictReader(open(out / "eval.csv"))] == [6, 12, 18]


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device():
    """A global batch split over 2 replicas = one device: synchronised batch norm, scaled losses,
    weight clipping applied once per mirrored variable, penalty weights sliced per replica."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "mirrored_check.py"), ROOT],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    cases = {d["case"]: d for d in map(json.loads, result.stdout.strip().splitlines())}
    assert sorted(cases) == ["dcgan default", "dcgan wgan clip", "legacy wgan-gp", "wgan-gp"]
    for diffs in cases.values():
        assert diffs["replicas"] == 2
        assert diffs["metric_abs_diff"] < 1e-4  # losses, D(x), D(G(z)): rounding passes, a misaligned penalty not
        # Adam's early updates are ~lr * sign(g): float-level gradient differences flip a few
        # near-zero elements, so compare whole updates: room for those flips, far below a misaligned penalty.
        assert diffs["update_max"] > 1e-4 and diffs["update_rel_l2"] < 1e-2
    # Tighter for the default: 3.2e-4 measured on one AVX-512 CPU (under 1e-4 with beta2 0.999: a first Adam
    # step's effective epsilon, eps / sqrt(1 - beta2), is 3x smaller at 0.99, so smaller gradients take those
    # full sign-like steps).
    assert cases["dcgan default"]["update_rel_l2"] < 1e-3
    assert cases["dcgan wgan clip"]["mirrored_largest_d_weight"] <= 0.01 + 1e-7


@pytest.mark.slow
def test_mirrored_cli_run_writes_one_set_of_outputs_and_trains_as_one_device(idx_dir, tmp_path):
    data_dir = idx_dir
    out = tmp_path / "mirrored"
    # The Adam settings the bounds below were set with (both rates 2e-4, beta1 0.5, beta2 0.999), pinned: with
    # momentum off and higher rates every step is sign-like and the two runs' rounding grows past them.
    adam = ("--learning-rate", "2e-4", "--d-learning-rate", "2e-4", "--beta1", "0.5", "--beta2", "0.999")
    proc = _spawn(out, data_dir, 4, "--strategy", "mirrored", "--logical-cpus", "2", "--no-export", *adam)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert sorted(os.listdir(out / "samples")) == ["step_000000.png", "step_000004.png"]
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-4")
    # The same run on one device: the split batch (batch norm synchronised) makes the same updates
    # up to rounding that Adam's early sign-like steps amplify: the bounds below leave room for that
    # rounding, not for a run trained on other batches or statistics.  Biases ahead of a batch norm get no gradient.
    assert run_train(tmp_path / "single", data_dir, "--no-export", *adam, steps=4) == 0
    keras.utils.set_random_seed(0)
    initial, _ = build_models(rundir.read_config(str(out))["preset"])  # where both runs started
    mirrored, _ = trained.restore_generator(str(out), average=False)
    single, _ = trained.restore_generator(str(tmp_path / "single"), average=False)
    kernels = [(m.numpy(), s.numpy(), i.numpy()) for m, s, i in zip(mirrored.variables, single.variables,
                                                                   initial.variables) if len(i.shape) >= 2]
    assert len(kernels) == 5
    for m, s, i in kernels:
        assert np.linalg.norm(m - s) < 0.2 * np.linalg.norm(s - i)
    grids = [cv2.imread(str(run / "samples" / "step_000004.png"), cv2.IMREAD_GRAYSCALE).astype(int)
             for run in (out, tmp_path / "single")]
    assert np.abs(grids[0] - grids[1]).max() <= 2


def _legacy_checkpoint(path, seed=7):
    """A legacy name-based checkpoint of random weights (initialiser scale, another RNG)."""
    from genmnist import convert
    from genmnist.models import legacy_variables
    from genmnist.presets import PRESETS
    generator, discriminator = build_models(PRESETS["legacy"])
    rng = np.random.default_rng(seed)
    values = {n: rng.normal(0, 0.02, size=v.shape).astype(np.float32)
              for n, v in legacy_variables(generator, discriminator).items()}
    return convert.write_legacy(values, str(path)), values


@pytest.mark.slow
def test_init_from_starts_from_the_legacy_checkpoint(idx_dir, tmp_path):
    from genmnist.models import legacy_variables
    data_dir = idx_dir
    prefix, values = _legacy_checkpoint(tmp_path / "init")
    out = tmp_path / "run"
    assert run_train(out, data_dir, "--preset", "legacy", "--init-from", prefix, "--no-export", steps=4) == 0
    generator, discriminator = build_models(rundir.read_config(str(out))["preset"])
    manager = rundir.checkpoint_manager(str(out), generator=generator, discriminator=discriminator)
    manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
    trained = legacy_variables(generator, discriminator)
    for name, value in values.items():
        if name.startswith("bn"):  # never trained in the legacy preset: still exactly the checkpoint's
            np.testing.assert_array_equal(trained[name].numpy(), value)
        elif value.size > 1:  # a few Adam steps from the loaded values, unrelated to the seeded ones
            assert np.corrcoef(trained[name].numpy().ravel(), value.ravel())[0, 1] > 0.9


def test_init_from_is_only_for_new_dcgan_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--model", "wgan", "--init-from", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "--init-from" in capsys.readouterr().err


@pytest.mark.xdist_group("train_cli_finished_run")  # one worker runs its fixture
@pytest.mark.slow
def test_restore_generator_picks_a_kept_checkpoint_and_names_the_kept_ones_otherwise(finished_run):
    from genmnist.errors import UserError
    run, _ = finished_run
    kernel = lambda g: g.get_layer("g_1").kernel.numpy()  # noqa: E731
    latest, _ = trained.restore_generator(str(run))
    at_12, _ = trained.restore_generator(str(run), step=12)
    at_8, _ = trained.restore_generator(str(run), step=8)
    np.testing.assert_array_equal(kernel(latest), kernel(at_12))
    assert not np.array_equal(kernel(at_8), kernel(at_12))
    with pytest.raises(UserError, match="no checkpoint of step 1; it has ckpt-4, ckpt-8, ckpt-12"):
        trained.restore_generator(str(run), step=1)


@pytest.mark.slow
def test_keep_checkpoints_zero_keeps_every_checkpoint(idx_dir, tmp_path):
    data_dir = idx_dir
    out = tmp_path / "all"
    assert run_train(out, data_dir, "--checkpoint-every", "2", "--keep-checkpoints", "0", "--no-export") == 0
    kept = tf.train.get_checkpoint_state(str(out / "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in kept] == [f"ckpt-{s}" for s in (2, 4, 6, 8, 10, 12)]
    trained.restore_generator(str(out), step=2)  # the oldest one is still there to be scored


@pytest.mark.slow
def test_the_checkpoint_finite_check_survives_an_edit_of_the_source_during_a_run(tmp_path):
    """AutoGraph reads a function's source by line number at its first call; the finite check
    is first called at the first checkpoint, so with AutoGraph a run whose loop.py was edited
    (a git pull) in the meantime crashed there, losing the training since the start."""
    shutil.copytree(os.path.join(ROOT, "genmnist"), tmp_path / "genmnist",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import linecache, tensorflow as tf\n"
              "from genmnist import loop\n"
              "source = open(loop.__file__).read()\n"
              "open(loop.__file__, 'w').write('\\n' * 30 + source)\n"
              "linecache.clearcache()\n"
              "print('finite:', bool(loop.all_finite([tf.constant([1.0]), tf.constant([2.0])])))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finite: True" in done.stdout
