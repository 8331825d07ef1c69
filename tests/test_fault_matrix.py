"""Every command that reads a run, against every way its directory can be damaged, and every output
against a full disk and an interrupt while it is written.

Each case asserts: exit status 0, 2 or 130; no traceback; one error line; the trained weights
used or a refusal, never an untrained generator; no file of the run lost or changed; no
temporary left.
"""

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from genmnist import convert, loop, rundir, sample, trained
from genmnist import evaluate as E
from genmnist.models import build_models, legacy_variables
from genmnist.presets import PRESETS

from conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPORARY = ("*.tmp*", "*_temp*")  # what genmnist.files and TF name their temporaries
NUM = 9  # images sampled or evaluated: the fewest the tiny classifier below accepts


# ------------------------------------------------------------------ a run with two checkpoints of known weights

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import write_idx_dir
    directory = tmp_path_factory.mktemp("data")
    write_idx_dir(directory, n=64)
    write_idx_dir(directory, n=64, seed=1, prefix="t10k")
    return str(directory)


@pytest.fixture(scope="module")
def intact(tmp_path_factory, data_dir):
    """A legacy-preset run (it samples without recomputing statistics: cheaper) whose checkpoints 4 and 8
    hold different, non-initial generator weights, and what each checkpoint yields: 4 sampled images and
    the legacy weights convert writes."""
    run = str(tmp_path_factory.mktemp("runs") / "intact")
    config = {"preset": PRESETS["legacy"], "seed": 0, "batch_size": 16, "steps": 8, "precision": "float32",
              "data_dir": data_dir}
    built = loop.build_run(config, run, tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    for number in (4, 8):
        for variable in built.trainer.generator.trainable_variables:
            variable.assign_add(rng.normal(0, 0.05, variable.shape).astype(np.float32))
        built.step.assign(number)
        rundir.save_checkpoint(built.manager, number)
    expected = {}
    for number in (4, 8):
        generator, preset = trained.load_generator(run, step=number)
        g, d = build_models(preset)
        rundir.restore(rundir.path(run, "checkpoints", f"ckpt-{number}"), tf.train.Checkpoint(generator=g,
                                                                                              discriminator=d))
        expected[number] = {"images": sample.generate(generator, preset, NUM, 0),
                            "legacy": {n: v.numpy() for n, v in legacy_variables(g, d).items()}}
    untrained = build_models(PRESETS["legacy"])[0]
    assert not np.array_equal(expected[8]["images"], expected[4]["images"])
    assert not np.array_equal(expected[8]["images"], sample.generate(untrained, PRESETS["legacy"], NUM, 0))
    return run, expected


def copy_run(source, run):
    """A copy of the run in hard links: cheap however large its checkpoints; every damage below
    replaces the files it changes, and so do the commands."""
    shutil.copytree(source, run, copy_function=os.link)


def rewrite(path, content):
    """Replace ``path`` by a new file: the run copies share the intact run's files (hard links)."""
    os.remove(path)
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())


def truncate(run, *numbers):
    for number in numbers:
        data = glob.glob(os.path.join(run, "checkpoints", f"ckpt-{number}.data-*"))[0]
        with open(data, "rb") as f:
            rewrite(data, f.read(os.path.getsize(data) // 2))


def write_index(run, content):
    rewrite(os.path.join(run, "checkpoints", "checkpoint"), content)


def write_config(run, content):
    rewrite(os.path.join(run, "config.json"), content)


def edit_config(run, change):
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    change(config)
    write_config(run, json.dumps(config))


PATHS = 'model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-8"\n'

# name -> (damage, which checkpoint a command must use: 8, 4, or None for a refusal; or {command: that, "other": that})
DAMAGES = {
    "index missing": (lambda r: os.remove(os.path.join(r, "checkpoints", "checkpoint")), 8),
    "index empty": (lambda r: write_index(r, b""), 8),
    "index binary garbage": (lambda r: write_index(r, b"\xff\xfe\x00\x81junk"), 8),
    "index text garbage": (lambda r: write_index(r, "garbage {"), 8),
    "index without timestamps": (lambda r: write_index(r, PATHS), 8),
    "index timestamps after a clock change": (lambda r: write_index(
        r, PATHS + "all_model_checkpoint_timestamps: 4e9\nall_model_checkpoint_timestamps: 4e9\n"
                   "last_preserved_timestamp: 4e9\n"), 8),
    "newest checkpoint truncated": (lambda r: truncate(r, 8), 4),
    "every checkpoint truncated": (lambda r: truncate(r, 4, 8), None),
    "config.json invalid JSON": (lambda r: write_config(r, '{"seed": 0,}'), None),
    "config.json binary": (lambda r: write_config(r, b"\xff\xfe"), None),
    "config.json a list": (lambda r: write_config(r, "[]"), None),
    "config.json without preset": (lambda r: edit_config(r, lambda c: c.pop("preset")), None),
    "config.json without seed": (lambda r: edit_config(r, lambda c: c.pop("seed")),  # only a resume needs it
                                 {"train --resume": None, "other": 8}),
    "config.json seed a string": (lambda r: edit_config(r, lambda c: c.update(seed="0")), None),
    "config.json precision unknown": (lambda r: edit_config(r, lambda c: c.update(precision="fp8")), None),
    "config.json pixel_range reversed": (lambda r: edit_config(r, lambda c: c["preset"].update(
        pixel_range=[1, 0])), None),
    "config.json pixel_range a string": (lambda r: edit_config(r, lambda c: c["preset"].update(
        pixel_range="0,1")), None),
    "config.json model unknown": (lambda r: edit_config(r, lambda c: c["preset"].update(model="gan")), None),
    "config.json model of another run": (lambda r: edit_config(r, lambda c: c["preset"].update(model="wgan")),
                                         None),
    "config.json learning_rate a string": (lambda r: edit_config(r, lambda c: c["preset"].update(
        learning_rate="fast")), None),
    "config.json preset field missing": (lambda r: edit_config(r, lambda c: c["preset"].pop("loss")), None),
}


def snapshot(run):
    """{relative path: (inode, size, mtime)} of every file of the run but the two a resume rewrites (index,
    config): a file rewritten or lost shows."""
    files = {}
    for dirpath, _, names in os.walk(run):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, run)
            if rel not in ("config.json", os.path.join("checkpoints", "checkpoint"), ".lock"):
                stat = os.stat(full)
                files[rel] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return files


def temporaries(*directories):
    return [p for d in directories for pattern in TEMPORARY
            for p in glob.glob(os.path.join(d, "**", pattern), recursive=True)]


def outcome(capsys, call):
    """(exit status, stderr) of a CLI main, which returns its status (None: 0) or raises SystemExit."""
    try:
        status = call()
    except SystemExit as exit_info:
        status = exit_info.code
    return status or 0, capsys.readouterr().err


def check_clean(status, err, allowed=(0, 2)):
    assert status in allowed and "Traceback" not in err, err
    if status == 2:
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1 and err.strip().endswith(errors[0]), err


# ------------------------------------------------------------------ the commands

def run_sample(run, out, data_dir, expected, uses, classifier=None):
    path = os.path.join(out, "s.npz")
    return (lambda: sample.main(["--run", run, "--num", str(NUM), "--out", path]),
            lambda: np.testing.assert_array_equal(np.load(path)["images"], expected[uses]["images"]))


@pytest.fixture(scope="module")
def classifier():
    """A tiny untrained classifier (8 features: 9 images suffice): evaluate's plumbing, not its scores."""
    from genmnist.classifier import Classifier, build_model
    return Classifier(build_model(filters=(2, 4), features=8))


def run_evaluate(run, out, data_dir, expected, uses, classifier):
    seen = []
    real = E.evaluate_images

    def spy(images, *args, **kwargs):
        seen.append(images)
        return real(images, *args, **kwargs)

    def call():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(E, "evaluate_images", spy)
            return E.main([run, "--num", str(NUM), "--k", "1", "--data-dir", data_dir, "--json"],
                          classifier=classifier)
    return call, lambda: np.testing.assert_array_equal(seen[0], expected[uses]["images"])


def run_resume(run, out, data_dir, expected, uses, classifier=None):
    from genmnist import train
    steps = uses or 8  # already there: a resume that restores and stops, without training
    return (lambda: train.main(["--out", run, "--resume", "--steps", str(steps), "--data-dir", data_dir,
                                "--batch-size", "16", "--no-export"]),
            lambda: None)


def run_convert(run, out, data_dir, expected, uses, classifier=None):
    target = os.path.join(out, "legacy")

    def check():
        reader = tf.train.load_checkpoint(os.path.join(target, convert.LEGACY_PREFIX))
        for name, value in expected[uses]["legacy"].items():
            np.testing.assert_array_equal(reader.get_tensor(name), value, err_msg=name)
    return lambda: convert.main(["--to-legacy", target, run]), check


COMMANDS = {"sample": run_sample, "evaluate RUN": run_evaluate, "train --resume": run_resume,
            "convert --to-legacy": run_convert}


# The fast tier runs one damage of each kind against every command; the slow tier runs them all.
REPRESENTATIVE = ("index missing", "index without timestamps", "newest checkpoint truncated",
                  "config.json model unknown")
CASES = [pytest.param(command, damage, marks=() if damage in REPRESENTATIVE else pytest.mark.slow,
                      id=f"{command}-{damage}")
         for command in COMMANDS for damage in DAMAGES]


@pytest.mark.parametrize("command, damage", CASES)
def test_a_damaged_run_directory_is_used_whole_or_refused(intact, data_dir, classifier, tmp_path, capsys, command,
                                                          damage):
    source, expected = intact
    run, out = str(tmp_path / "run"), str(tmp_path / "out")
    copy_run(source, run)
    os.makedirs(out)
    make_damage, uses = DAMAGES[damage]
    uses = uses.get(command, uses["other"]) if isinstance(uses, dict) else uses
    make_damage(run)
    before = snapshot(run)
    call, check_output = COMMANDS[command](run, out, data_dir, expected, uses, classifier)
    status, err = outcome(capsys, call)
    check_clean(status, err)
    assert status == (2 if uses is None else 0), err
    if uses is not None:
        check_output()
        if command == "train --resume":
            assert f"already at step {uses} of {uses}" in err, err
    after = snapshot(run)
    assert before.items() <= after.items(), "a file of the run was lost or changed"
    assert not temporaries(run, out)
    if uses is None:
        assert os.listdir(out) == []


def test_a_resume_rebuilds_a_missing_index_and_keeps_every_checkpoint(intact, data_dir, tmp_path, capsys):
    source, _ = intact
    run = str(tmp_path / "run")
    copy_run(source, run)
    os.remove(os.path.join(run, "checkpoints", "checkpoint"))
    status, err = outcome(capsys, run_resume(run, None, data_dir, None, 8)[0])
    assert status == 0 and "was missing; rebuilt it from ckpt-4, ckpt-8" in err, err
    assert [os.path.basename(c) for c in rundir.run_checkpoints(run)] == ["ckpt-4", "ckpt-8"]
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), os.path.join(run, "checkpoints"), 3)
    assert [os.path.basename(c) for c in manager.checkpoints] == ["ckpt-4", "ckpt-8"]  # it will rotate them


def test_resume_with_fewer_steps_than_the_run_has_refuses_and_keeps_config(intact, data_dir, tmp_path, capsys):
    source, _ = intact
    run = str(tmp_path / "run")
    copy_run(source, run)
    with open(os.path.join(run, "config.json"), "rb") as f:
        config = f.read()
    from genmnist import train
    status, err = outcome(capsys, lambda: train.main(["--out", run, "--resume", "--steps", "3", "--data-dir", data_dir,
                                                      "--no-export"]))
    check_clean(status, err)
    assert status == 2 and "is at step 8, past --steps 3" in err, err
    with open(os.path.join(run, "config.json"), "rb") as f:
        assert f.read() == config


TF_IMPORT_LINES = ("absl::InitializeLog", "I0000", "oneDNN", "cuda drivers", "rebuild TensorFlow", "AVX")


@pytest.mark.slow
def test_a_refused_restore_is_the_last_line_of_the_process(intact, tmp_path):
    """In a real process: TensorFlow's warnings about a cut-short restore come as its objects are torn down,
    after the error line, unless the CLI silences them."""
    source, _ = intact
    run = str(tmp_path / "run")
    copy_run(source, run)
    edit_config(run, lambda c: c["preset"].update(model="wgan"))
    result = subprocess.run([sys.executable, "-m", "genmnist.sample", "--run", run, "--out",
                             str(tmp_path / "s.npz")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = [line for line in result.stderr.splitlines() if not any(t in line for t in TF_IMPORT_LINES)]
    assert result.returncode == 2 and len(lines) == 1 and "does not hold the weights" in lines[0], result.stderr


# ------------------------------------------------------------------ outputs: a full disk, an interrupt, a wrong --out

@contextlib.contextmanager
def small_disk(path, size="48k"):
    """A tmpfs of ``size`` at ``path``: a real full disk (needs root and mount)."""
    os.makedirs(path)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission): no real full disk to test")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


OUTS = ["s.npz", "grid.png", "folder"]


@pytest.mark.parametrize("out", OUTS)
def test_sample_on_a_full_disk_is_one_line_and_leaves_nothing(intact, tmp_path, capsys, out):
    run, _ = intact
    with small_disk(str(tmp_path / "disk")) as disk:
        with open(os.path.join(disk, "filler"), "wb") as f:
            f.write(os.urandom(40 * 1024))  # incompressible: what is left is less than the output needs
        target = os.path.join(disk, out)
        status, err = outcome(capsys, lambda: sample.main(["--run", run, "--num", "64", "--out", target]))
        check_clean(status, err)
        assert status == 2 and "No space left on device" in err and "wrote" not in err, err
        assert os.listdir(disk) == ["filler"]


def test_a_full_disk_under_the_tensorboard_log_keeps_the_steps_and_is_one_line(data_dir, tmp_path, capsys):
    """TensorFlow writes the event file when its queue flushes, inside whichever summary call that is."""
    from genmnist import train
    run = tmp_path / "run"
    with small_disk(str(run / "logs"), size="32k"):
        status, err = outcome(capsys, lambda: train.main([
            "--preset", "legacy", "--data-dir", data_dir, "--out", str(run), "--steps", "12", *TINY,
            "--log-every", "1", "--sample-every", "1", "--checkpoint-every", "100", "--no-export"]))
        check_clean(status, err)
        assert status == 2 and "TensorBoard log" in err and "No space left on device" in err, err
        stopped = rundir.latest_checkpoint(str(run))
        assert stopped is not None and rundir.checkpoint_number(stopped) < 12  # the steps before it are kept
        assert "--resume" in err.splitlines()[-1] and not temporaries(str(run))


def _interrupt_mid_write(monkeypatch, owner, name, call, write_first=None):
    """``owner.name`` raises KeyboardInterrupt (Ctrl-C; genmnist delivers SIGTERM as one) on its ``call``-th
    call, after ``write_first(args)`` has put part of the output on disk."""
    real, calls = getattr(owner, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if write_first:
                write_first(*args, **kwargs)
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, interrupted)


def _half_gif(image, path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"GIF89a")


def _half_checkpoint(manager, checkpoint_number):
    os.makedirs(manager.directory, exist_ok=True)
    with open(os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp"), "wb") as f:
        f.write(b"partial")


TRAINING_WRITES = {  # each write a run makes between its steps: where the interrupt lands, on which call
    "sample grid": lambda mp: _interrupt_mid_write(mp, __import__("genmnist.images").images, "png_bytes", 3),
    "progress GIF": lambda mp: _interrupt_mid_write(mp, __import__("PIL.Image").Image.Image, "save", 2,
                                                    _half_gif),
    "TensorBoard log": lambda mp: _interrupt_mid_write(mp, tf.summary, "scalar", 7),
    "periodic checkpoint": lambda mp: _interrupt_mid_write(mp, tf.train.CheckpointManager, "save", 1,
                                                           _half_checkpoint),
}


@pytest.mark.parametrize("write", [pytest.param(w, marks=() if w == "sample grid" else pytest.mark.slow)
                                   for w in TRAINING_WRITES])
def test_an_interrupt_during_each_training_write_saves_the_steps_and_leaves_no_temporary(data_dir, tmp_path,
                                                                                          capsys, monkeypatch,
                                                                                          write):
    from genmnist import train
    run = tmp_path / "run"
    argv = ["--preset", "legacy", "--data-dir", data_dir, "--out", str(run), "--steps", "8", *TINY,
            "--log-every", "1", "--sample-every", "2", "--checkpoint-every", "4", "--no-export"]
    with monkeypatch.context() as mp:
        TRAINING_WRITES[write](mp)
        status, err = outcome(capsys, lambda: train.main(argv))
    assert status == 130 and "Traceback" not in err, err
    assert "continue with: python -m genmnist.train" in err.strip().splitlines()[-1]
    stopped = rundir.latest_checkpoint(str(run))
    assert stopped is not None and rundir.checkpoint_number(stopped) < 8  # the interrupt landed mid-run
    assert not temporaries(str(run))
    kept = snapshot(str(run))
    assert train.main(argv + ["--resume"]) in (0, None)  # the run goes on from there
    assert rundir.checkpoint_number(rundir.latest_checkpoint(str(run))) == 8
    assert all(path in snapshot(str(run)) for path in kept if not path.startswith("checkpoints"))


@pytest.mark.parametrize("out", OUTS)
def test_an_interrupt_while_sample_writes_removes_the_temporary(intact, tmp_path, capsys, monkeypatch, out):
    run, _ = intact
    from genmnist import images
    real_png_bytes, calls = images.png_bytes, []

    def png_bytes_interrupted(image):  # the grid's only PNG, or the folder's third
        calls.append(image)
        if len(calls) == (1 if out == "grid.png" else 3):
            raise KeyboardInterrupt
        return real_png_bytes(image)

    def savez_interrupted(path, **arrays):
        with open(path, "wb") as f:
            f.write(b"half an archive")
        raise KeyboardInterrupt
    monkeypatch.setattr(images, "png_bytes", png_bytes_interrupted)
    monkeypatch.setattr(sample.np, "savez_compressed", savez_interrupted)
    target = str(tmp_path / out)
    status, err = outcome(capsys, lambda: sample.main(["--run", run, "--num", "8", "--out", target]))
    check_clean(status, err, allowed=(130,))
    assert status == 130 and err.strip().endswith("interrupted; no output was left half-written"), err
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


@pytest.mark.parametrize("out, message", [
    ("dir.npz", "is an existing directory"), ("dir.png", "is an existing directory"),
    ("file", "is an existing file"), ("file/x.npz", "could not write"),
])
def test_sample_out_that_cannot_be_written_is_one_line(intact, tmp_path, capsys, out, message):
    run, _ = intact
    os.makedirs(tmp_path / "dir.npz")
    os.makedirs(tmp_path / "dir.png")
    (tmp_path / "file").write_text("x")
    status, err = outcome(capsys, lambda: sample.main(["--run", run, "--num", "4", "--out", str(tmp_path / out)]))
    check_clean(status, err)
    assert status == 2 and message in err, err
    assert sorted(os.listdir(tmp_path)) == ["dir.npz", "dir.png", "file"]


def test_sample_num_above_the_memory_bound_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trained, "load_generator", lambda *a, **k: pytest.fail("loaded before refusing"))
    status, err = outcome(capsys, lambda: sample.main(["--run", str(tmp_path), "--num", "10000000",
                                                        "--out", str(tmp_path / "s.npz")]))
    check_clean(status, err)
    assert status == 2 and f"limit of {sample.MAX_NUM} images" in err


def test_a_full_disk_during_export_leaves_no_half_export_and_keeps_the_old_one(tmp_path, monkeypatch):
    from genmnist import export
    from genmnist.errors import UserError

    generator = build_models(PRESETS["default"])[0]
    target = str(tmp_path / "export")
    os.makedirs(target)
    (tmp_path / "export" / "generator.keras").write_text("the previous export")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tf.saved_model, "save", disk_full)
    with pytest.raises(UserError, match="could not write .*export \\(No space left on device\\)"):
        export.export_generator(generator, PRESETS["default"], target)
    assert sorted(os.listdir(tmp_path)) == ["export"]
    assert (tmp_path / "export" / "generator.keras").read_text() == "the previous export"


def test_a_full_disk_while_eval_csv_is_written_keeps_its_rows(tmp_path, monkeypatch):
    from genmnist.errors import UserError

    evaluator = loop.Evaluator.__new__(loop.Evaluator)  # the CSV half only: no classifier
    evaluator.csv_path = str(tmp_path / "eval.csv")
    evaluator._write_rows([{"step": 1, **dict.fromkeys(E.METRICS, 0.5)}])
    before = (tmp_path / "eval.csv").read_text()
    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(UserError, match="No space left on device"):
        evaluator._write_rows(evaluator._rows() + [{"step": 2, **dict.fromkeys(E.METRICS, 0.5)}])
    monkeypatch.undo()
    assert (tmp_path / "eval.csv").read_text() == before and os.listdir(tmp_path) == ["eval.csv"]


# ------------------------------------------------------------------ legacy_v1.train and convert: bad targets

@pytest.mark.parametrize("case", ["out is a file", "init-from junk prefix", "init-from junk index"])
def test_legacy_train_refuses_bad_paths_before_writing(data_dir, tmp_path, capsys, case):
    from legacy_v1 import train as legacy_train

    out = tmp_path / "out"
    args = ["--data-dir", data_dir, "--out", str(out), "--steps", "1", "--batch-size", "16"]
    if case == "out is a file":
        out.write_text("x")
    elif case == "init-from junk prefix":
        (tmp_path / "junk.index").write_bytes(b"junk")
        args += ["--init-from", str(tmp_path / "junk")]
    else:
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / "checkpoint").write_bytes(b"\xff\xfe")
        args += ["--init-from", str(tmp_path / "ckpt")]
    status, err = outcome(capsys, lambda: legacy_train.main(args))
    check_clean(status, err)
    assert status == 2
    assert out.is_file() if case == "out is a file" else not out.exists()


def test_convert_to_legacy_onto_an_existing_file_is_one_line(intact, tmp_path, capsys):
    run, _ = intact
    (tmp_path / "taken").write_text("x")
    status, err = outcome(capsys, lambda: convert.main(["--to-legacy", str(tmp_path / "taken"), run]))
    check_clean(status, err)
    assert status == 2 and "is an existing file" in err
    assert (tmp_path / "taken").read_text() == "x"


# ------------------------------------------------------------------ damaged inputs

def test_a_csv_with_bytes_that_are_not_utf8_is_one_line(tmp_path):
    from genmnist import data
    from genmnist.errors import UserError

    (tmp_path / "mnist_train.csv").write_bytes(b"5," + b"0," * 783 + b"0\n\xff\xfe,1\n")
    with pytest.raises(UserError, match="mnist_train.csv is not a text CSV"):
        data.load_mnist(str(tmp_path))


def test_an_npz_damaged_inside_its_zip_is_one_line(tmp_path, capsys, classifier):
    path = tmp_path / "s.npz"
    np.savez_compressed(path, images=np.random.default_rng(0).integers(0, 255, (200, 28, 28), np.uint8))
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2:len(damaged) // 2 + 64] = bytes(64)  # still a zip: its member fails its CRC
    path.write_bytes(bytes(damaged))
    status, err = outcome(capsys, lambda: E.main([str(path), "--k", "1"], classifier=classifier))
    check_clean(status, err)
    assert status == 2 and "cannot read" in err and "damaged" in err


# ------------------------------------------------------------------ no --data-dir on a machine without a network

def test_offline_without_data_dir_is_one_line_within_seconds(monkeypatch, tmp_path):
    import socket

    from genmnist import data
    from genmnist.errors import UserError

    timeouts = []

    def unreachable(address, timeout=None, *args, **kwargs):
        timeouts.append(timeout)
        raise socket.gaierror(-3, "Temporary failure in name resolution")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # no local copy
    monkeypatch.setattr(socket, "create_connection", unreachable)
    import tensorflow_datasets as tfds
    monkeypatch.setattr(tfds, "load", lambda *a, **k: pytest.fail("tensorflow-datasets was asked anyway"))
    with pytest.raises(UserError, match="cannot be reached .*Temporary failure in name resolution.*--data-dir"):
        data.load_mnist(None)
    assert timeouts == [data.REACH_TIMEOUT_S] and data.REACH_TIMEOUT_S <= 30  # one bounded try, no retries


@pytest.mark.slow
def test_offline_without_data_dir_in_a_process_without_a_network(tmp_path):
    """The real thing: a network namespace with no route (unshare -rn), the real socket and tfds."""
    env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path)}
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -rn is not permitted here: no network-less process to test in")
    result = subprocess.run(["unshare", "-rn", sys.executable, "-m", "genmnist.sample", "--help"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0
    code = "from genmnist.data import load_mnist; from genmnist.errors import exit_on_user_error\n" \
           "with exit_on_user_error('p'): load_mnist(None)"
    result = subprocess.run(["unshare", "-rn", sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("p: error: no --data-dir and ")
