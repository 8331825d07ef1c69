"""The layout of a run directory, its config, and the checkpoint that ties them together.

    RUN/config.json            preset and run settings (written atomically)
    RUN/checkpoints/           tf.train.CheckpointManager: models, optimizers, step, seed
    RUN/samples/step_*.png     fixed-noise grids at the legacy milestones
    RUN/progress.gif           those grids animated
    RUN/eval.csv               --eval-every scores, one row per evaluated step
    RUN/logs/                  TensorBoard scalars and images
    RUN/export/                generator.keras and saved_model/ (z -> image)
    RUN/.lock                  held (flock) by the process writing the run

Training, sampling, export and conversion all go through these helpers so
the layout is defined once.
"""

import contextlib
import fcntl
import glob
import json
import math
import os
import shutil
import sys

import tensorflow as tf

from genmnist.defaults import KEEP_CHECKPOINTS
from genmnist.errors import UserError
from genmnist.models import SamplingStatistics, build_models
from genmnist.presets import Preset

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
LOGS = "logs"
EXPORT = "export"
PROGRESS_GIF = "progress.gif"
EVAL_CSV = "eval.csv"
LOCK = ".lock"


def path(run_dir, *parts):
    return os.path.join(run_dir, *parts)


def write_config(run_dir, config):
    os.makedirs(run_dir, exist_ok=True)
    tmp = path(run_dir, CONFIG + ".tmp")
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    os.replace(tmp, path(run_dir, CONFIG))


def read_config(run_dir):
    config_path = path(run_dir, CONFIG)
    if not os.path.isfile(config_path):
        raise UserError(f"{run_dir} is not a genmnist run directory (no {CONFIG}); "
                        "pass the --out directory of a training run")
    with open(config_path) as f:
        config = json.load(f)
    config.setdefault("precision", "float32")  # runs from before --precision existed trained in float32
    try:
        config["preset"] = Preset.from_dict(config["preset"])
    except (TypeError, ValueError) as err:
        raise UserError(f"{config_path} holds no usable preset ({err}); was it edited by hand?") from None
    return config


# train flags named unlike the setting they set
_SETTING_OF_FLAG = {"preset": "name", "ema": "ema_decay", "r1": "r1_weight"}
_RESUME_HONOURS = {"steps", "data_dir"}  # stored settings a resumed run takes from its command line


def ignored_on_resume(config, given):
    """``--flag VALUE`` for each flag in ``given`` ({dest: value}, as typed on a resumed run) that asks for
    another value of a stored setting (a preset field or a config entry): the run keeps its own."""
    preset, ignored = config["preset"], []
    for dest, value in sorted(given.items()):
        name = _SETTING_OF_FLAG.get(dest, dest)
        if name in _RESUME_HONOURS or not (hasattr(preset, name) or name in config):
            continue
        stored = getattr(preset, name) if hasattr(preset, name) else config[name]
        wanted = tuple(map(float, value.split(","))) if name == "pixel_range" else value
        if wanted != stored:
            ignored.append(f"--{dest.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return ignored


def checkpoint_manager(run_dir, max_to_keep=KEEP_CHECKPOINTS, **trackables):
    """A CheckpointManager over ``tf.train.Checkpoint(**trackables)`` in RUN/checkpoints,
    keeping the latest ``max_to_keep`` (None: every one).

    TF writes checkpoint data under temporary names and updates the index file
    atomically, so a run killed at any moment leaves the previous checkpoint intact.
    """
    checkpoint = tf.train.Checkpoint(**trackables)
    return tf.train.CheckpointManager(checkpoint, path(run_dir, CHECKPOINTS), max_to_keep=max_to_keep)


@contextlib.contextmanager
def locked(run_dir):
    """Hold RUN/.lock while the block writes the run: a second writer into the same directory refuses at once.

    An OS lock (flock) rather than a marker file: the kernel drops it when the holder
    exits, even by ``kill -9``, so a crashed run never leaves its directory locked.
    """
    lock_path = path(run_dir, LOCK)
    created = not os.path.lexists(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileExistsError:
        raise UserError(f"{run_dir} is a file, not a directory; choose another --out") from None
    except OSError as err:
        raise UserError(f"cannot write into {run_dir} ({err.strerror}); choose a writable --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(f"{run_dir} is in use by another genmnist process (pid {holder}); "
                            "wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_partial_checkpoints(path(run_dir, CHECKPOINTS))  # what an earlier, killed holder left
        yield
    finally:
        os.close(fd)  # releases the lock
        if created and os.listdir(run_dir) == [LOCK]:  # refused before writing anything: leave no trace
            os.remove(lock_path)
            os.rmdir(run_dir)


def checkpoint_damage(checkpoint):
    """None when every tensor of ``checkpoint`` reads back (TF verifies each one's checksum), else why not."""
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError) as err:  # truncated: IndexError; flipped bytes: DataLoss
        return str(err).splitlines()[0][:100] if str(err) else type(err).__name__
    return None


def newest_readable(manager, candidates=None):
    """The newest of ``candidates`` (default: the manager's checkpoints) that reads back whole.

    A damaged newer one (a truncated or corrupted data file) is skipped with a warning
    naming it, so one bad file never costs the run; None when there is no checkpoint.
    """
    candidates = manager.checkpoints if candidates is None else candidates
    skipped = []
    for checkpoint in reversed(candidates):
        reason = checkpoint_damage(checkpoint)
        if reason is None:
            if skipped:
                print(f"warning: skipped damaged checkpoint {'; '.join(skipped)}; using {checkpoint}",
                      file=sys.stderr)
            return checkpoint
        skipped.append(f"{checkpoint} ({reason})")
    if skipped:
        raise UserError(f"no readable checkpoint: {'; '.join(skipped)}; train the run again")
    return None


def latest_checkpoint(run_dir):
    """The path of the run's latest recorded checkpoint, or None before its first."""
    return tf.train.latest_checkpoint(path(run_dir, CHECKPOINTS))


def recorded_checkpoints(run_dir):
    """The checkpoints RUN/checkpoints/checkpoint lists, oldest first (whoever's manager reads them)."""
    state = tf.train.get_checkpoint_state(path(run_dir, CHECKPOINTS))
    return list(state.all_model_checkpoint_paths) if state else []


def checkpoint_bytes(manager):
    """What one checkpoint of ``manager`` holds: the bytes of every variable it saves (its data file's size)."""
    total = 0
    for name, trackable in vars(manager.checkpoint).items():
        if not name.startswith("_"):
            variables = [trackable] if isinstance(trackable, tf.Variable) else getattr(trackable, "variables", [])
            total += sum(v.shape.num_elements() * tf.as_dtype(v.dtype).size for v in variables)
    return total


def _number(checkpoint_file):
    """N of ``ckpt-N.index``, ``ckpt-N.data-*`` or ``ckpt-N_temp``; -1 for anything else."""
    stem = os.path.basename(checkpoint_file).split(".")[0].split("_")[0]
    return int(stem[5:]) if stem.startswith("ckpt-") and stem[5:].isdigit() else -1


def remove_partial_checkpoints(directory, number=None):
    """Delete what an unfinished save left in a checkpoint ``directory`` (``number``: only checkpoint N's):
    TF's ``ckpt-N_temp*`` files, a half-written state file, and the ``ckpt-N.*`` files of a checkpoint
    newer than every one the state file lists (written, but killed before it was recorded)."""
    state_path = os.path.join(directory, "checkpoint")
    state = tf.train.get_checkpoint_state(directory)
    if state is None and os.path.exists(state_path):
        newest = math.inf  # an unreadable state file: leave every checkpoint alone
    else:
        newest = max((_number(p) for p in state.all_model_checkpoint_paths), default=-1) if state else -1
    pattern = "*" if number is None else str(number)
    leftovers = glob.glob(os.path.join(directory, f"ckpt-{pattern}_temp*"))
    leftovers += [f for f in glob.glob(os.path.join(directory, f"ckpt-{pattern}.*")) if _number(f) > newest]
    leftovers += glob.glob(os.path.join(directory, "checkpoint.tmp*"))
    for leftover in leftovers:
        if os.path.isdir(leftover):
            shutil.rmtree(leftover)
        else:
            os.remove(leftover)
    return leftovers


def save_checkpoint(manager, number):
    """``manager.save(number)``; a failed write (disk full, ...) removes its partial files, keeps the
    previous checkpoint the latest, and becomes a UserError saying how much space a checkpoint needs."""
    try:
        return manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as err:
        remove_partial_checkpoints(manager.directory, number)
        # the cause ends TF's message ("PATH; No space left on device"); OSError has it on its own
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).split("; ")[-1][:100]
        previous = tf.train.latest_checkpoint(manager.directory) or "none"
        raise UserError(f"could not write checkpoint {number} in {manager.directory} ({reason}); the latest is "
                        f"still {previous}; a checkpoint needs about {checkpoint_bytes(manager) / 1e6:.0f} MB: "
                        "free that much space there and continue with --resume") from None


def restore_generator(run_dir, average=True, step=None):
    """(generator, preset) of a run's newest readable checkpoint (or of ``ckpt-STEP``), exactly as saved:
    batch-norm statistics as trained, whatever the preset samples with.  For code that sets the
    statistics itself (the benchmarks); to draw samples use :func:`load_generator`.

    That is G's weight average when the run keeps one, unless ``average`` is False
    (G's own weights: what the benchmarks compare the average against).
    """
    config = read_config(run_dir)
    preset = config["preset"]
    generator, _ = build_models(preset)
    name = "ema_generator" if preset.ema_decay and average else "generator"
    manager = checkpoint_manager(run_dir, **{name: generator})
    if manager.latest_checkpoint is None:
        raise UserError(f"{run_dir} has no checkpoint yet; train it first")
    candidates = manager.checkpoints
    if step is not None:
        candidates = [path(run_dir, CHECKPOINTS, f"ckpt-{step}")]
        if candidates[0] not in manager.checkpoints:
            raise UserError(f"{run_dir} keeps no checkpoint of step {step}; it has "
                            + ", ".join(os.path.basename(c) for c in manager.checkpoints))
    manager.checkpoint.restore(newest_readable(manager, candidates)).expect_partial()
    return generator, preset


def load_generator(run_dir, average=True, step=None):
    """(generator, preset) ready to sample: :func:`restore_generator`, then the batch-norm
    statistics its preset samples with (:class:`genmnist.models.SamplingStatistics`).  What genmnist.sample
    and genmnist.evaluate use."""
    generator, preset = restore_generator(run_dir, average, step)
    return SamplingStatistics(generator, preset.sampling_stats)(), preset
