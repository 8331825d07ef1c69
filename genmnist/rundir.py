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
import time

import tensorflow as tf

from genmnist.defaults import KEEP_CHECKPOINTS
from genmnist.errors import UserError
from genmnist.files import replacing
from genmnist.precision import FLOAT32, PRECISIONS
from genmnist.presets import MODEL_NAMES, Preset

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
    with replacing(path(run_dir, CONFIG)) as tmp, open(tmp, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def _integer(low, high=None):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v and (high is None or v < high)


# What each stored setting must be, checked on load like a flag: (needed by, check, what it must be);
# "all": every reader, "resume": a resumed run, None: nobody (checked when present).
_CONFIG_FIELDS = {
    "preset": ("all", lambda v: isinstance(v, dict), "an object of preset fields"),
    "seed": ("resume", _integer(0, 2**32), "a seed in 0..4294967295"),
    "batch_size": ("resume", _integer(1), "a positive integer"),
    "steps": (None, _integer(0), "0 or a positive integer"),
    "data_dir": (None, lambda v: v is None or isinstance(v, str), "a directory path or null"),
    "precision": (None, lambda v: v in PRECISIONS, " or ".join(PRECISIONS)),
    "init_from": (None, lambda v: v is None or isinstance(v, str), "a checkpoint path or null"),
}


def read_config(run_dir, resume=False):
    """RUN/config.json with its preset as a :class:`Preset`; a file a run could not use (edited by hand,
    damaged) is a UserError naming the field, before anything is built from it. ``resume``: also
    require what a resumed run reads (seed, batch size)."""
    config_path = path(run_dir, CONFIG)
    if not os.path.isfile(config_path):
        raise UserError(f"{run_dir} is not a genmnist run directory (no {CONFIG}); "
                        "pass the --out directory of a training run")
    fix = "was it edited by hand? restore it or train the run again"
    try:
        with open(config_path, "rb") as f:
            config = json.loads(f.read().decode())
    except OSError as err:
        raise UserError(f"cannot read {config_path} ({err.strerror})") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise UserError(f"{config_path} is not valid JSON ({str(err).splitlines()[0][:80]}); {fix}") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_path} holds a JSON {type(config).__name__}, not an object of settings; {fix}")
    for name, (needed_by, check, what) in _CONFIG_FIELDS.items():
        if name not in config:
            if needed_by == "all" or (resume and needed_by == "resume"):
                raise UserError(f"{config_path} has no '{name}' ({what}); {fix}")
        elif not check(config[name]):
            raise UserError(f"{config_path}: '{name}' must be {what}, not {json.dumps(config[name])[:60]}; {fix}")
    config.setdefault("precision", FLOAT32)  # runs from before --precision existed trained in float32
    try:
        config["preset"] = Preset.from_dict(config["preset"])
    except (TypeError, ValueError) as err:
        raise UserError(f"{config_path} holds no usable preset ({str(err)[:200]}); {fix}") from None
    if config["preset"].model not in MODEL_NAMES:  # a Preset may name a toy model; a run cannot
        raise UserError(f"{config_path}: the preset's 'model' must be " + " or ".join(MODEL_NAMES)
                        + f", not {json.dumps(config['preset'].model)[:60]}; {fix}")
    return config


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
        repair_index(path(run_dir, CHECKPOINTS))  # before a manager reads it
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


def newest_readable(candidates):
    """The newest of ``candidates`` (checkpoint prefixes, oldest first) that reads back whole.

    A damaged newer one (a truncated or corrupted data file) is skipped with a warning
    naming it, so one bad file never costs the run; None when there is no checkpoint.
    """
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


INDEX = "checkpoint"  # TF's checkpoint state file in RUN/checkpoints: which checkpoints the run has


def read_index(directory):
    """(TF's CheckpointState of ``directory`` or None, why it cannot be used or None).

    TF itself raises on an empty or binary index (ValueError, UnicodeDecodeError) and
    returns None for a missing or garbled one; here each is a reason, never an exception.
    """
    index_path = os.path.join(directory, INDEX)
    if not os.path.exists(index_path):
        return None, "missing"
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (ValueError, tf.errors.OpError):  # UnicodeDecodeError is a ValueError
        state = None
    if state is None or not (state.all_model_checkpoint_paths or state.model_checkpoint_path):
        return None, "unreadable"
    if not state.all_model_checkpoint_paths:  # an index of the older form: the latest only
        state.all_model_checkpoint_paths.append(state.model_checkpoint_path)
    return state, None


def present_checkpoints(directory):
    """The checkpoints whose index files are in ``directory``, oldest (lowest number) first."""
    found = [f[:-len(".index")] for f in glob.glob(os.path.join(directory, "ckpt-*.index"))]
    return sorted((f for f in found if checkpoint_number(f) >= 0), key=checkpoint_number)


def run_checkpoints(run_dir, warn=True):
    """The run's checkpoints, oldest first: those its index lists, or, when the index is missing
    or unreadable, the checkpoint files present (with a warning when ``warn``).

    Read from the index itself, not through a CheckpointManager, which drops the checkpoints
    whose timestamps it takes for old (an index without them, or after a clock change).
    """
    directory = path(run_dir, CHECKPOINTS)
    state, problem = read_index(directory)
    if state is not None:
        return list(state.all_model_checkpoint_paths)
    present = present_checkpoints(directory)
    if present and warn:
        print(f"warning: {os.path.join(directory, INDEX)} is {problem}; using the checkpoint files present ("
              + ", ".join(os.path.basename(c) for c in present) + ")", file=sys.stderr)
    return present


def latest_checkpoint(run_dir):
    """The path of the run's latest checkpoint, or None before its first."""
    checkpoints = run_checkpoints(run_dir, warn=False)
    return checkpoints[-1] if checkpoints else None


def repair_index(directory):
    """Make the index a CheckpointManager reads list every checkpoint the run has, before one reads it.

    A missing or unreadable index is rebuilt from the checkpoint files present; one whose
    timestamps the manager would take for old gets the files' times. A warning names what
    was done; nothing else is touched. An unreadable index with no checkpoint beside it is
    refused: it is not this command's to delete.
    """
    state, problem = read_index(directory)
    index_path = os.path.join(directory, INDEX)
    if state is None:
        checkpoints = present_checkpoints(directory)
        if not checkpoints:
            if problem == "unreadable":
                raise UserError(f"{index_path} is unreadable and no checkpoint is beside it; "
                                "delete it or choose another --out")
            return
    else:
        checkpoints = list(state.all_model_checkpoint_paths)
        now, stamps = time.time(), list(state.all_model_checkpoint_timestamps)
        if len(stamps) == len(checkpoints) and all(min(t, now) > min(state.last_preserved_timestamp, now)
                                                   for t in stamps):
            return
    stamps = [min(os.path.getmtime(c + ".index"), time.time()) if os.path.exists(c + ".index") else time.time()
              for c in checkpoints]
    tf.compat.v1.train.update_checkpoint_state(
        directory, os.path.basename(checkpoints[-1]), [os.path.basename(c) for c in checkpoints],
        all_model_checkpoint_timestamps=stamps, last_preserved_timestamp=min(stamps) - 1)
    what = f"was {problem}; rebuilt it" if state is None else "had no usable timestamps; rewrote it"
    print(f"warning: {index_path} {what} from " + ", ".join(os.path.basename(c) for c in checkpoints),
          file=sys.stderr)


def checkpoint_bytes(manager):
    """What one checkpoint of ``manager`` holds: the bytes of every variable it saves (its data file's size)."""
    total = 0
    for name, trackable in vars(manager.checkpoint).items():
        if not name.startswith("_"):
            variables = [trackable] if isinstance(trackable, tf.Variable) else getattr(trackable, "variables", [])
            total += sum(v.shape.num_elements() * tf.as_dtype(v.dtype).size for v in variables)
    return total


def checkpoint_number(checkpoint_file):
    """N of ``ckpt-N.index``, ``ckpt-N.data-*`` or ``ckpt-N_temp``; -1 for anything else."""
    stem = os.path.basename(checkpoint_file).split(".")[0].split("_")[0]
    return int(stem[5:]) if stem.startswith("ckpt-") and stem[5:].isdigit() else -1


def remove_partial_checkpoints(directory, number=None):
    """Delete what an unfinished save left in a checkpoint ``directory`` (``number``: only checkpoint N's):
    TF's ``ckpt-N_temp*`` files, a half-written state file, and the ``ckpt-N.*`` files of a checkpoint
    newer than every one the state file lists (written, but killed before it was recorded)."""
    state, _ = read_index(directory)
    if state is not None:
        newest = max(checkpoint_number(p) for p in state.all_model_checkpoint_paths)
    elif number is not None:
        newest = number - 1  # nothing recorded yet: checkpoint N's files are this invocation's failed write
    else:
        newest = math.inf  # no index says which are recorded: leave every checkpoint alone
    pattern = "*" if number is None else str(number)
    leftovers = glob.glob(os.path.join(directory, f"ckpt-{pattern}_temp*"))
    leftovers += [f for f in glob.glob(os.path.join(directory, f"ckpt-{pattern}.*")) if checkpoint_number(f) > newest]
    leftovers += glob.glob(os.path.join(directory, "checkpoint.tmp*"))
    for leftover in leftovers:
        if os.path.isdir(leftover):
            shutil.rmtree(leftover)
        else:
            os.remove(leftover)
    return leftovers


def save_checkpoint(manager, number):
    """``manager.save(number)``; a failed or interrupted write removes its partial files and keeps the
    previous checkpoint the latest; a failed one (disk full, ...) becomes a UserError saying how much
    space a checkpoint needs."""
    try:
        return manager.save(checkpoint_number=number)
    except BaseException as err:  # an interrupt (Ctrl-C, SIGTERM) mid-write too: no ckpt-N_temp left behind
        remove_partial_checkpoints(manager.directory, number)
        if not isinstance(err, (tf.errors.OpError, OSError)):
            raise
        # the cause ends TF's message ("PATH; No space left on device"); OSError has it on its own
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).split("; ")[-1][:100]
        previous = manager.latest_checkpoint or "none"
        raise UserError(f"could not write checkpoint {number} in {manager.directory} ({reason}); the latest is "
                        f"still {previous}; a checkpoint needs about {checkpoint_bytes(manager) / 1e6:.0f} MB: "
                        "free that much space there and continue with --resume") from None


def restore(checkpoint, into):
    """Restore the ``into`` tf.train.Checkpoint's objects from ``checkpoint`` (a prefix), every one of
    them, or a UserError: never a model left with its initial weights because the checkpoint lacks
    them or holds other shapes."""
    try:
        into.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise UserError(f"{checkpoint} does not hold the weights this run's config.json describes ({reason}); "
                        "was config.json edited? restore it or train the run again") from None
