"""Faults end cleanly: the run-directory lock, damaged checkpoints, failed checkpoint writes and bad paths."""

import glob
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from genmnist import convert, rundir, sample, train, trained
from genmnist.errors import UserError
from genmnist.models import build_models
from genmnist.presets import PRESETS

from conftest import make_tiny_run, train_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_line_error(capsys, call):
    """Run ``call`` (a CLI main), expect exit 2 and return its single error line (progress lines may precede it)."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert exit_info.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert err.strip().endswith(errors[0])
    return errors[0]


# ------------------------------------------------------------------ the run-directory lock

def test_a_second_holder_of_the_lock_refuses_at_once(tmp_path):
    import threading
    refused = []

    def second_holder():  # a lock that waited for the first holder would never return while it is held
        with pytest.raises(UserError, match=f"in use by another genmnist process \\(pid {os.getpid()}\\)"):
            with rundir.locked(str(tmp_path)):
                pass
        refused.append(True)
    with rundir.locked(str(tmp_path)):
        thread = threading.Thread(target=second_holder, daemon=True)
        thread.start()
        thread.join(timeout=60)
        assert refused == [True], "the second holder waited instead of refusing"
    with rundir.locked(str(tmp_path)):  # released on leaving the block
        pass


@pytest.mark.slow
def test_the_lock_of_a_killed_process_is_released(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from genmnist import rundir\n"
         "with rundir.locked(sys.argv[1]):\n    print('locked', flush=True); time.sleep(600)", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            with rundir.locked(str(tmp_path)):
                pass
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    with rundir.locked(str(tmp_path)):
        pass


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("x") and str(p), "is a file, not a directory"),
    (lambda p: "/proc/genmnist-run", "cannot write into /proc/genmnist-run"),
])
def test_the_lock_refuses_a_file_or_an_unwritable_path(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        with rundir.locked(make(tmp_path / "taken")):
            pass


# ------------------------------------------------------------------ damaged checkpoints

def damage(checkpoint, how="truncate"):
    data = glob.glob(checkpoint + ".data-*")[0]
    if how == "truncate":
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 2)
    else:
        with open(data, "r+b") as f:
            f.seek(os.path.getsize(data) // 2)
            f.write(b"\xff" * 8)


@pytest.fixture
def two_checkpoint_run(tmp_path):
    """A run directory with ckpt-1 and ckpt-2 of an untrained default generator (no weight average: G alone
    is saved), different weights in each."""
    preset = PRESETS["default"].replace(ema_decay=0.0)
    generator, _ = build_models(preset)
    rundir.write_config(str(tmp_path), {"preset": preset.to_dict(), "batch_size": 8, "seed": 0})
    manager = rundir.checkpoint_manager(str(tmp_path), generator=generator)
    first = [v.numpy() for v in generator.variables]
    manager.save(checkpoint_number=1)
    generator.variables[0].assign(generator.variables[0] + 1.0)
    manager.save(checkpoint_number=2)
    return tmp_path, first


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one_with_a_warning(two_checkpoint_run, capsys, how):
    run, first = two_checkpoint_run
    damage(str(run / "checkpoints" / "ckpt-2"), how)
    generator, _ = trained.restore_generator(str(run))
    for restored, expected in zip(generator.variables, first):
        np.testing.assert_array_equal(restored.numpy(), expected)
    err = capsys.readouterr().err
    assert "warning: skipped damaged checkpoint" in err and "ckpt-2" in err and err.strip().endswith("ckpt-1")


def test_sample_cli_on_a_damaged_newest_checkpoint_uses_the_older_one(two_checkpoint_run, tmp_path, capsys):
    run, _ = two_checkpoint_run
    damage(str(run / "checkpoints" / "ckpt-2"))
    assert sample.main(["--run", str(run), "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0
    assert "ckpt-2" in capsys.readouterr().err
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 28, 28)


def test_every_checkpoint_damaged_is_one_line(two_checkpoint_run, tmp_path, capsys):
    run, _ = two_checkpoint_run
    for number in (1, 2):
        damage(str(run / "checkpoints" / f"ckpt-{number}"))
    err = one_line_error(capsys, lambda: sample.main(["--run", str(run), "--out", str(tmp_path / "s.npz")]))
    assert "no readable checkpoint" in err and "ckpt-1" in err and "ckpt-2" in err


# ------------------------------------------------------------------ a failed checkpoint write

def disk_full_after_a_partial_write(self, checkpoint_number=None, **kwargs):
    """Stands in for CheckpointManager.save on a full disk: TF's temp folder is half written, then the error."""
    temp = os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp")
    os.makedirs(temp, exist_ok=True)
    with open(os.path.join(temp, "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 1000)
    raise tf.errors.ResourceExhaustedError(None, None, f"{temp}/part-00000; No space left on device")


def test_a_failed_checkpoint_write_cleans_up_and_keeps_the_previous_latest(tmp_path, monkeypatch):
    step = tf.Variable(0, dtype=tf.int64)
    weights = tf.Variable(tf.zeros([1000, 250]))  # 1 MB
    manager = rundir.checkpoint_manager(str(tmp_path), step=step, weights=weights)
    previous = rundir.save_checkpoint(manager, 1)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full_after_a_partial_write)
    with pytest.raises(UserError) as err:
        rundir.save_checkpoint(manager, 2)
    message = str(err.value)
    assert "No space left on device" in message and "needs about 1 MB" in message and previous in message
    assert "\n" not in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["checkpoint", "ckpt-1.data-00000-of-00001",
                                                             "ckpt-1.index"]
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == previous


def test_leftovers_of_a_killed_save_are_removed_and_listed_checkpoints_kept(tmp_path):
    manager = rundir.checkpoint_manager(str(tmp_path), step=tf.Variable(0, dtype=tf.int64))
    manager.save(checkpoint_number=1)
    directory = tmp_path / "checkpoints"
    os.makedirs(directory / "ckpt-2_temp")
    (directory / "ckpt-2.index").write_bytes(b"orphan")  # renamed into place, never recorded in the state
    (directory / "checkpoint.tmp0123").write_text("half")
    removed = rundir.remove_partial_checkpoints(str(directory))
    assert len(removed) == 3
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]


def test_an_unreadable_state_file_never_costs_a_checkpoint(tmp_path):
    manager = rundir.checkpoint_manager(str(tmp_path), step=tf.Variable(0, dtype=tf.int64))
    manager.save(checkpoint_number=1)
    directory = tmp_path / "checkpoints"
    (directory / "checkpoint").write_text("garbage {")
    os.makedirs(directory / "ckpt-2_temp")
    assert rundir.remove_partial_checkpoints(str(directory)) == [str(directory / "ckpt-2_temp")]
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]


# ------------------------------------------------------------------ bad paths for sample and convert

def test_sample_out_an_existing_file_without_extension_is_one_line(two_checkpoint_run, tmp_path, capsys):
    run, _ = two_checkpoint_run
    (tmp_path / "taken").write_text("x")
    err = one_line_error(capsys, lambda: sample.main(["--run", str(run), "--out", str(tmp_path / "taken")]))
    assert "is an existing file" in err and ".npz" in err


@pytest.mark.parametrize("which", ["run", "checkpoints"])
def test_convert_names_a_genmnist_checkpoint_and_the_command_to_use(two_checkpoint_run, tmp_path, capsys, which):
    run, _ = two_checkpoint_run
    source = run if which == "run" else run / "checkpoints"
    err = one_line_error(capsys, lambda: convert.main([str(source), str(tmp_path / "new")]))
    assert "genmnist" in err and "not a legacy" in err and "--to-legacy" in err
    assert len(err.replace(str(source), "")) < 250  # short apart from the path it names
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ flags and interrupts

@pytest.mark.parametrize("main, argv, flag", [
    (sample.main, ["--run", "r", "--out", "o", "--num", "0"], "--num"),
    (sample.main, ["--run", "r", "--out", "o", "--seed", "-1"], "--seed"),
    ("evaluate", ["x.npz", "--k", "0"], "--k"),
    ("legacy", ["--out", "o", "--learning-rate", "-1"], "--learning-rate"),
    ("legacy", ["--out", "o", "--learning-rate", "nan"], "--learning-rate"),
])
def test_numeric_flags_out_of_range_are_refused_by_argparse(capsys, main, argv, flag):
    if main == "evaluate":
        from genmnist.evaluate import main
    elif main == "legacy":
        from legacy_v1.train import main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and f"argument {flag}: " in err and " is not " in err


def test_given_flags_are_the_ones_spelled_out_even_at_their_default():
    import argparse

    from genmnist.argtypes import given_flags, positive_float, seed

    def parser():
        p = argparse.ArgumentParser()
        p.add_argument("--seed", type=seed, default=0)
        p.add_argument("--learning-rate", type=positive_float, default=None)
        p.add_argument("--spectral-norm", action="store_true")
        return p
    assert given_flags(parser(), []) == {}
    assert given_flags(parser(), ["--seed", "0", "--spectral-norm"]) == {"seed": 0, "spectral_norm": True}


def test_resume_names_every_stored_setting_a_flag_asks_to_change():
    config = {"preset": PRESETS["default"], "seed": 3, "batch_size": 64, "steps": 100, "data_dir": "d"}
    given = {"loss": "hinge", "learning_rate": 0.1, "seed": 0, "batch_size": 64, "preset": "default",
             "spectral_norm": True, "pixel_range": "0,1", "ema": 0.5, "steps": 200, "data_dir": "e", "out": "o"}
    assert train.ignored_on_resume(config, given) == [
        "--ema 0.5", "--learning-rate 0.1", "--loss hinge", "--seed 0", "--spectral-norm"]


def test_an_interrupt_reaching_the_cli_wrapper_is_one_line_and_130(capsys):
    from genmnist.errors import exit_on_user_error

    with pytest.raises(SystemExit) as exit_info:
        with exit_on_user_error("prog", "nothing to resume"):
            raise KeyboardInterrupt
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "prog: interrupted; nothing to resume"


# ------------------------------------------------------------------ genmnist.train

def run_train(out, data_dir, *extra, steps=8):
    return train_tiny(out, data_dir, "--no-export", *extra, steps=steps)


def final_tensors(run):
    reader = tf.train.load_checkpoint(str(run / "checkpoints"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in n}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """8 iterations on fake IDX data, checkpoints at 4 and 8."""
    return make_tiny_run(tmp_path_factory, run_train)


def test_train_into_a_locked_run_directory_refuses_before_loading_data(tmp_path, capsys):
    with rundir.locked(str(tmp_path / "run")):
        err = one_line_error(capsys, lambda: run_train(tmp_path / "run", str(tmp_path / "no-data")))
    assert "in use by another genmnist process" in err and "no-data" not in err


@pytest.mark.parametrize("out, message", [("file", "is a file, not a directory"),
                                          ("/proc/genmnist-run", "cannot write into /proc/genmnist-run")])
def test_train_out_a_file_or_unwritable_is_one_line_before_loading_data(tmp_path, capsys, out, message):
    if out == "file":
        out = tmp_path / "file"
        out.write_text("x")
    err = one_line_error(capsys, lambda: run_train(out, str(tmp_path / "no-data")))
    assert message in err


@pytest.mark.parametrize("flag, value", [
    ("--learning-rate", "-1"), ("--learning-rate", "0"), ("--beta1", "1"), ("--ema", "1.5"),
    ("--label-smoothing", "-0.1"), ("--clip", "-1"), ("--gp-weight", "nan"), ("--n-critic", "0"),
    ("--steps", "0"), ("--batch-size", "-3"), ("--seed", "-1"), ("--checkpoint-every", "0"),
    ("--keep-checkpoints", "-1"), ("--log-every", "0"), ("--sample-every", "-1"), ("--eval-every", "-1"),
    ("--eval-num", "0"), ("--logical-cpus", "-2"),
])
def test_train_numeric_flags_are_range_checked_by_argparse(capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--out", "o", flag, value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and f"argument {flag}: {value} is not " in err


@pytest.mark.xdist_group("faults_tiny_run")  # one worker runs its fixture
@pytest.mark.slow
def test_resume_names_every_flag_it_ignores(tiny_run, capsys):
    out, data_dir = tiny_run
    assert run_train(out, data_dir, "--resume", "--loss", "hinge", "--learning-rate", "0.1", "--seed", "0") == 0
    err = capsys.readouterr().err
    assert "ignoring --learning-rate 0.1, --loss hinge" in err and "--seed" not in err.split("ignoring")[1]


@pytest.mark.xdist_group("faults_tiny_run")  # one worker runs its fixture
@pytest.mark.slow
def test_resume_past_a_damaged_newest_checkpoint_finishes_like_the_intact_run(tiny_run, tmp_path, capsys):
    import shutil
    out, data_dir = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    damage(str(copy / "checkpoints" / "ckpt-8"))
    assert run_train(copy, data_dir, "--resume", "--keep-checkpoints", "0") == 0
    err = capsys.readouterr().err
    assert "warning: skipped damaged checkpoint" in err and "ckpt-8" in err and "steps 4..8" in err
    expected, got = final_tensors(out), final_tensors(copy)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.slow
def test_an_interrupt_as_a_step_returns_saves_that_step_counted(idx_dir, tmp_path, capsys, monkeypatch):
    """A signal reaches Python when a step's call returns, before the loop's next line: the checkpoint it
    saves must count that step with its updates, or the resumed run trains that step's batch again."""
    from genmnist import training
    real_init = training.GANTrainer.__init__

    def init_then_interrupt_as_the_fifth_step_returns(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        step, calls = self.train_step, []

        def step_then_interrupt(*inputs):
            metrics = step(*inputs)
            calls.append(None)
            if len(calls) == 5:  # between checkpoints 4 and 8
                raise KeyboardInterrupt
            return metrics
        self.train_step = step_then_interrupt

    def counts(run):  # iterations the checkpoint says were done, and G's updates it holds
        tensors = final_tensors(run)
        return int(tensors["step/.ATTRIBUTES/VARIABLE_VALUE"]), \
            int(tensors["g_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"])
    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(training.GANTrainer, "__init__", init_then_interrupt_as_the_fifth_step_returns)
        assert run_train(run, idx_dir) == 130
    assert "checkpoint (interrupted) at step 5" in capsys.readouterr().err
    assert counts(run) == (5, 5)
    assert run_train(run, idx_dir, "--resume") == 0
    assert "steps 5..8" in capsys.readouterr().err
    assert counts(run) == (8, 8)  # no batch trained twice


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_exits_2_and_keeps_the_previous_one(idx_dir, tmp_path, capsys, monkeypatch):
    data_dir = idx_dir
    real_save = tf.train.CheckpointManager.save

    def second_save_fails(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 4:
            return real_save(self, checkpoint_number=checkpoint_number, **kwargs)
        return disk_full_after_a_partial_write(self, checkpoint_number)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", second_save_fails)
    err = one_line_error(capsys, lambda: run_train(tmp_path / "full", data_dir))
    assert "could not write checkpoint 8" in err and "No space left" in err and "MB" in err and "--resume" in err
    assert not glob.glob(str(tmp_path / "full" / "checkpoints" / "*_temp*"))
    assert tf.train.latest_checkpoint(str(tmp_path / "full" / "checkpoints")).endswith("ckpt-4")


@pytest.mark.parametrize("where", ["data loading", "warm-up"])
def test_an_interrupt_before_the_first_g_step_exits_130_without_a_traceback(idx_dir, tmp_path, capsys,
                                                                          monkeypatch, where):
    from genmnist import training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    if where == "data loading":
        import genmnist.data
        monkeypatch.setattr(genmnist.data, "read_idx", interrupt)
    else:
        real_init = training.GANTrainer.__init__

        def init_then_interrupt_the_warm_up(self, *args, **kwargs):
            real_init(self, *args, **kwargs)
            self.discriminator_step = interrupt
        monkeypatch.setattr(training.GANTrainer, "__init__", init_then_interrupt_the_warm_up)
    data_dir = idx_dir
    assert run_train(tmp_path / "run", data_dir) == 130
    err = capsys.readouterr().err
    assert "interrupted before the first training step; nothing saved" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    with rundir.locked(str(tmp_path / "run")):  # released
        pass


@pytest.mark.slow
def test_sigterm_while_starting_up_exits_130_without_a_traceback(idx_dir, tmp_path):
    import signal
    data_dir = idx_dir
    proc = subprocess.Popen([sys.executable, "-m", "genmnist.train", "--data-dir", data_dir,
                             "--out", str(tmp_path / "run")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    _wait_until_catching(proc.pid, signal.SIGTERM)  # the start-up handler is in place; TensorFlow loads next
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted while starting" in err, err  # it landed during start-up, not in the training loop


def _wait_until_catching(pid, signum, timeout=120):
    """Until process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc): readiness, not a sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            caught = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
        if caught >> (signum - 1) & 1:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never caught signal {signum}")


@pytest.mark.xdist_group("faults_tiny_run")  # one worker runs its fixture
@pytest.mark.slow
def test_a_run_stopped_before_its_export_exports_on_resume(tiny_run, tmp_path):
    import shutil
    out, data_dir = tiny_run  # trained with --no-export: as if killed after its final checkpoint
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "export.tmp").mkdir()  # a half export of the killed run
    assert train.main(["--data-dir", data_dir, "--out", str(copy), "--steps", "8", "--resume"]) == 0
    assert (copy / "export" / "generator.keras").is_file() and (copy / "export" / "saved_model").is_dir()
    assert not (copy / "export.tmp").exists()


@pytest.mark.slow
def test_a_full_disk_at_a_sample_grid_saves_the_steps_and_exits_2(idx_dir, tmp_path, capsys, monkeypatch):
    from genmnist import images
    data_dir = idx_dir
    real_encode, grids = images.png_bytes, []

    def full_at_the_fourth_grid(image):
        grids.append(image)
        if len(grids) == 4:  # the grid after 6 iterations (--sample-every 2)
            raise OSError(28, "No space left on device")
        return real_encode(image)
    monkeypatch.setattr(images, "png_bytes", full_at_the_fourth_grid)
    err = one_line_error(capsys, lambda: run_train(tmp_path / "full", data_dir, "--sample-every", "2"))
    assert "could not write" in err and "step_000006.png" in err and "No space left on device" in err
    assert rundir.latest_checkpoint(str(tmp_path / "full")).endswith("ckpt-6")  # the steps since ckpt-4 kept
    assert not glob.glob(str(tmp_path / "full" / "**" / "*.tmp*"), recursive=True)
