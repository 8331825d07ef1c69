"""The training loop, in named pieces: ``genmnist.train`` runs them, bench/speed.py times them.

``build_run`` turns a run config into models, trainer, step counter and checkpoint
manager (restored on resume); ``data_stream`` yields (real batch, noise) pairs that
are pure functions of (seed, batch index), so a resumed run continues exactly as an
uninterrupted one would; ``SampleWriter``, ``CheckpointHook``, ``Evaluator`` and
``MetricsLogger`` are what happens around the steps, ``Schedule`` says when, and
``train_loop`` is the loop itself.
"""

import atexit
import contextlib
import csv
import dataclasses
import datetime
import math
import os
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from genmnist import images, precision, rundir
from genmnist.data import batches, load_mnist
from genmnist.defaults import CHECKPOINT_EVERY, EVAL_NUM, KEEP_CHECKPOINTS, LOG_EVERY
from genmnist.distribute import is_chief
from genmnist.errors import UserError
from genmnist.evaluate import METRICS
from genmnist.files import replacing
from genmnist.legacy_weights import assign_legacy, read_legacy
from genmnist.models import Z_DIM, build_models, legacy_variables
from genmnist.training import GANTrainer

NUM_SAMPLES = 64  # the fixed-noise grid is 8x8


def is_milestone(done):
    """The legacy DISPLAY_STEP cadence: 0, 10, ..., 90, 100, 200, ..., 900, 1000, 2000, ...

    Counted here in iterations done (0: before the first), the count checkpoints and logs carry;
    the legacy script counted from 0 and so drew each of its grids one iteration later."""
    if done < 10:
        return done == 0
    return done % 10 ** int(math.log10(done)) == 0


def noise(batch_size, seed, batch_index, n_critic=None):
    """z ~ N(0, 1) for one batch ([b, n_critic, z] when given), keyed by (seed, batch index) so runs replay."""
    shape = [batch_size, Z_DIM] if n_critic is None else [batch_size, n_critic, Z_DIM]
    return tf.random.stateless_normal(shape, seed=[seed, batch_index])


@tf.function(autograph=False)  # nothing to convert; AutoGraph would re-read this file at the first call
def all_finite(variables):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])


def seed_everything(preset, seed):
    """Seed Keras' initialisers and keep each trace of a step computing the same sums; for a gradient penalty
    (WGAN-GP, R1) also make TF's reductions repeatable."""
    # Grappler's dependency optimizer rewrote the same traced step differently now and then (about 1 trace
    # in 25 under load gave other rounding, one of a few fixed alternatives), so two runs of one seed, or a
    # run and its resume, could part; with it off 120 traces gave one result, at no measured cost in speed
    # (docs/search.md, "Same seed, same run").  It applies to the functions traced from here on.
    tf.config.optimizer.set_experimental_options({"dependency_optimization": False})
    if preset.has_gradient_penalty:
        # The penalty's double backprop sums gradient contributions in an order that
        # depends on TF's inter-op thread scheduling; one inter-op thread makes the
        # run repeatable (same-seed WGAN-GP runs differed without it, and so did R1 runs
        # of the default preset; its cost in speed: docs/search.md, "Same seed, same run").
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already running in this process (e.g. called from Python)
            print("note: TensorFlow is already initialised; this gradient-penalty run may not be bit-repeatable",
                  file=sys.stderr)
    keras.utils.set_random_seed(seed)


@dataclasses.dataclass
class Run:
    """A built run: where it lives, its config, and the training state its checkpoints hold."""

    run_dir: str
    config: dict
    strategy: tf.distribute.Strategy
    trainer: GANTrainer
    step: tf.Variable
    manager: tf.train.CheckpointManager
    chief: bool

    @property
    def preset(self):
        return self.config["preset"]

    @property
    def start(self):
        return int(self.step.numpy())


def build_run(config, run_dir, strategy, keep_checkpoints=KEEP_CHECKPOINTS, resume=False):
    """Models, trainer and checkpoint manager for ``config``; restored from the latest
    checkpoint on ``resume``; the chief writes RUN/config.json."""
    preset = config["preset"]
    with strategy.scope(), precision.policy(config["precision"]):
        generator, discriminator = build_models(preset)
    try:
        trainer = GANTrainer(generator, discriminator, preset, seed=config["seed"], strategy=strategy)
    except ValueError as err:
        raise UserError(str(err)) from None
    if config.get("init_from") and not resume:
        values, prefix = read_legacy(config["init_from"])
        assign_legacy(values, legacy_variables(generator, discriminator), prefix)
        trainer.sync_sampler()
    chief = is_chief(strategy)
    step = trainer.step
    manager = checkpoint_manager(trainer, step, run_dir, keep_checkpoints, chief)
    if resume:  # every worker restores the chief's checkpoint
        latest = rundir.newest_readable(rundir.run_checkpoints(run_dir))
        if latest is None:
            raise UserError(f"{run_dir} has no checkpoint to resume from; start it again without --resume")
        rundir.restore(latest, manager.checkpoint)
        if int(step.numpy()) > config["steps"]:  # before config.json would record the shorter length
            raise UserError(f"{run_dir} is at step {int(step.numpy())}, past --steps {config['steps']}; "
                            f"a run cannot be shortened: pass --steps {int(step.numpy())} or more")
    if chief:
        rundir.write_config(run_dir, {**config, "preset": preset.to_dict()})
    return Run(run_dir, config, strategy, trainer, step, manager, chief)


def checkpoint_manager(trainer, step, run_dir, keep_checkpoints=KEEP_CHECKPOINTS, chief=True):
    """What a checkpoint holds: models, optimizers, the penalty's random stream, the step and
    the weight average when the preset keeps one."""
    extra = {"ema_generator": trainer.sampler} if trainer.preset.ema_decay else {}
    # Every multi-worker replica must take part in saving; only the chief's copy is kept.
    directory = run_dir if chief else tempfile.mkdtemp(prefix="genmnist-worker-")
    if not chief:
        atexit.register(shutil.rmtree, directory, True)
    return rundir.checkpoint_manager(
        directory, keep_checkpoints, generator=trainer.generator, discriminator=trainer.discriminator,
        g_optimizer=trainer.g_optimizer, d_optimizer=trainer.d_optimizer, rng=trainer.rng, step=step, **extra)


def data_stream(data, preset, seed, batch_size, start, strategy):
    """(real batch, noise) pairs from the batch a run at step ``start`` needs next, split by ``strategy``."""
    first_batch = 0 if start == 0 else preset.warmup_d_steps + start
    reals = batches(data, batch_size, preset.pixel_range, seed, first_batch)

    def batch_noise(k):  # a named function: AutoGraph warns that it cannot parse this as a lambda
        return noise(batch_size, seed, k, preset.n_critic)
    zs = tf.data.Dataset.range(first_batch, 2**62).map(batch_noise)
    return iter(strategy.experimental_distribute_dataset(tf.data.Dataset.zip(reals, zs).prefetch(2)))


def warm_up(trainer, stream, start):
    """The legacy D-only steps before the first iteration (none when resuming)."""
    if start == 0:
        for _ in range(trainer.preset.warmup_d_steps):
            trainer.discriminator_step(*next(stream))


class TensorBoardLog:
    """RUN/logs, TensorBoard's event file (a no-op log off the chief).  TensorFlow writes it when its queue
    flushes, from inside any summary call, so a full disk can surface in any of them: each becomes one
    line naming the directory, and the run saves its steps and stops as it does for a sample grid."""

    def __init__(self, directory=None):
        self.directory = directory
        self.writer = tf.summary.create_file_writer(directory) if directory else tf.summary.create_noop_writer()

    @contextlib.contextmanager
    def writing(self):
        """The block's summaries go to this log."""
        try:
            with self.writer.as_default():
                yield
        except tf.errors.OpError as err:  # ResourceExhaustedError on a full disk
            lines = [line.split("}}")[-1].strip() for line in err.message.splitlines()]  # no TF op name
            reason = next((line for line in lines if "No space" in line), lines[0])
            raise UserError(f"could not write the TensorBoard log in {self.directory}: {reason}; free space "
                            "and continue with --resume") from None

    def flush(self):
        with self.writing():
            self.writer.flush()

    def close(self):
        with self.writing():
            self.writer.close()


class SampleWriter:
    """The fixed-noise grid after N iterations: RUN/samples/step_N.png, a progress GIF frame and a
    TensorBoard image at step N, the step number of the checkpoint and the scalars of that moment."""

    def __init__(self, run_dir, preset, seed, log):
        self.run_dir, self.pixel_range, self.log = run_dir, preset.pixel_range, log
        self.samples_dir = rundir.path(run_dir, rundir.SAMPLES)
        self.fixed_z = noise(NUM_SAMPLES, seed, -1)

    def __call__(self, done, sampler):
        picture = images.grid(images.to_uint8(sampler(self.fixed_z, training=False), self.pixel_range))
        images.write_png(os.path.join(self.samples_dir, f"step_{done:06d}.png"), picture)
        images.write_gif(images.milestone_pngs(self.samples_dir), rundir.path(self.run_dir, rundir.PROGRESS_GIF))
        with self.log.writing():
            tf.summary.image("samples", picture[None, :, :, None], step=done)


class CheckpointHook:
    """Save the training state after checking the weights are finite (a diverged run keeps its last good one)."""

    def __init__(self, manager, step, variables):
        self.manager, self.step, self.variables = manager, step, variables

    def save(self):
        if not bool(all_finite(self.variables)):
            raise FloatingPointError("weights are not finite")
        return rundir.save_checkpoint(self.manager, int(self.step.numpy()))

    def __call__(self, reason):
        path = self.save()
        print(f"\ncheckpoint ({reason}) at step {int(self.step.numpy())}: {path}", file=sys.stderr)


class Progress:
    """One status line: a bar, the losses, D(x), D(G(z)) and steps/s; rewritten in place on a terminal."""

    def __init__(self, total, first, out=None):
        self.out = out or sys.stderr
        self.total, self.tty = total, self.out.isatty()
        self.last_step, self.last_time = first, time.perf_counter()

    def update(self, step, metrics):
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        done = int(30 * step / self.total)
        eta = (self.total - step) / rate if rate > 0 else 0
        penalty = f"penalty {metrics['penalty']:.4f} " if "penalty" in metrics else ""
        line = (f"[{'#' * done}{'.' * (30 - done)}] {step}/{self.total} "
                f"d_loss {metrics['d_loss']:.4f} {penalty}g_loss {metrics['g_loss']:.4f} "
                f"D(x) {metrics['d_real']:.3f} D(G(z)) {metrics['d_fake']:.3f} "
                f"{rate:.2f} steps/s ETA {datetime.timedelta(seconds=int(eta))}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.out, flush=True)
        return rate

    def close(self):
        if self.tty:
            print(file=self.out)


class MetricsLogger:
    """The NaN check, the progress line and the TensorBoard scalars of one logged step."""

    TAGS = (("d_loss", "d_loss"), ("penalty", "penalty"), ("g_loss", "g_loss"), ("d_real", "D(x)"),
            ("d_fake", "D(G(z))"))

    def __init__(self, progress, log):
        self.progress, self.log = progress, log

    def __call__(self, metrics, done):
        values = {k: float(v) for k, v in metrics.items()}
        if not all(map(math.isfinite, values.values())):
            raise FloatingPointError(f"loss is not finite at step {done} "
                                     f"(d_loss={values['d_loss']}, g_loss={values['g_loss']})")
        rate = self.progress.update(done, values)
        with self.log.writing():
            for name, tag in self.TAGS:
                if name in values:  # the penalty only where there is one
                    tf.summary.scalar(tag, values[name], step=done)
            tf.summary.scalar("steps_per_sec", rate, step=done)


class Evaluator:
    """``--eval-every``: sample quality during training, to TensorBoard (eval/*) and RUN/eval.csv."""

    COLUMNS = ("step", *METRICS)

    def __init__(self, run_dir, data_dir, num, seed, start_step=0):
        from genmnist import evaluate
        from genmnist.classifier import load_classifier

        self.evaluate, self.num, self.seed = evaluate, num, seed
        self.classifier = load_classifier()
        self.evaluate.check_images(np.zeros((num, 28, 28), np.uint8), self.evaluate.min_images(self.classifier),
                                   what="--eval-num")
        self.real = evaluate.prepare_real(self.classifier, load_mnist(data_dir, "test").images)
        self.csv_path = rundir.path(run_dir, rundir.EVAL_CSV)
        self._drop_rows_after(start_step)

    def _rows(self):
        if not os.path.exists(self.csv_path):
            return []
        with open(self.csv_path, newline="") as f:
            return list(csv.DictReader(f))

    def _write_rows(self, rows):
        """The whole file, under a temporary name and renamed: a full disk never costs the earlier rows."""
        with replacing(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            out = csv.DictWriter(f, self.COLUMNS)
            out.writeheader()
            out.writerows(rows)

    def _drop_rows_after(self, step):
        """A killed run resumes from its last checkpoint and evaluates the steps after it
        again: drop the rows it wrote for them, so each step has one row."""
        rows = self._rows()
        kept = [r for r in rows if int(r["step"]) <= step]
        if len(kept) < len(rows):
            self._write_rows(kept)

    def __call__(self, generator, preset, step, log):
        from genmnist.sample import generate

        metrics = self.evaluate.evaluate_images(generate(generator, preset, self.num, self.seed),
                                                self.classifier, self.real)
        row = {"step": step, **{k: metrics[k] for k in self.COLUMNS[1:]}}
        with log.writing():
            for name in self.COLUMNS[1:]:
                tf.summary.scalar(f"eval/{name}", row[name], step=step)
        self._write_rows(self._rows() + [row])
        print(f"\neval at step {step}: " + ", ".join(f"{k} {row[k]:.3f}" for k in self.COLUMNS[1:]),
              file=sys.stderr)


@dataclasses.dataclass
class Hooks:
    """What runs around the steps; ``samples`` and ``evaluator`` are None where they do not run."""

    log: TensorBoardLog
    checkpoint: CheckpointHook
    samples: SampleWriter | None = None
    evaluator: Evaluator | None = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        """Close the TensorBoard log on every way out of the run.  When the run is already ending in an
        error, that error is the one to report, so a write error from the close is dropped."""
        with contextlib.suppress(*((UserError,) if kind else ())):
            self.log.close()
        return False


def make_hooks(run, eval_every=0, eval_num=EVAL_NUM):
    """The hooks of ``run``: only the chief writes samples, logs and evaluations."""
    chief = run.chief
    log = TensorBoardLog(rundir.path(run.run_dir, rundir.LOGS) if chief else None)
    models = run.trainer.generator.variables + run.trainer.discriminator.variables
    seed = run.config["seed"]
    return Hooks(log, CheckpointHook(run.manager, run.step, models),
                 SampleWriter(run.run_dir, run.preset, seed, log) if chief else None,
                 Evaluator(run.run_dir, run.config["data_dir"], eval_num, seed, run.start)
                 if eval_every and chief else None)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When each hook runs, in iterations (0: never, for the optional ones)."""

    total: int
    log_every: int = LOG_EVERY
    checkpoint_every: int = CHECKPOINT_EVERY
    sample_every: int = 0
    eval_every: int = 0

    def log_due(self, done):
        return done % self.log_every == 0 or done == self.total

    def grid_due(self, done):
        """The legacy milestones (0: before the first iteration), the last iteration, and every ``sample_every``."""
        return bool(is_milestone(done) or done == self.total
                    or (self.sample_every and done % self.sample_every == 0))

    def eval_due(self, done):
        return bool(self.eval_every and (done % self.eval_every == 0 or done == self.total))

    def checkpoint_due(self, done):
        return done % self.checkpoint_every == 0 and done != self.total


def train_loop(run, stream, schedule, hooks, progress=None):
    """Iterations ``run.start``..``schedule.total``; raises FloatingPointError on a non-finite loss
    and lets KeyboardInterrupt through, the progress line closed either way."""
    progress = progress or Progress(schedule.total, run.start)
    log = MetricsLogger(progress, hooks.log)
    if run.start == 0:
        _sample_and_evaluate(run, schedule, hooks, 0, evaluate=False)  # G as initialised (and D warmed up)
    try:
        for iteration in range(run.start, schedule.total):
            metrics = run.trainer.train_step(*next(stream))  # counts itself in run.step
            done = iteration + 1
            if schedule.log_due(done):
                log(metrics, done)
            _sample_and_evaluate(run, schedule, hooks, done)
            if schedule.checkpoint_due(done):
                hooks.checkpoint("periodic")
    finally:
        progress.close()


def _sample_and_evaluate(run, schedule, hooks, done, evaluate=True):
    """The grid and the evaluation due after ``done`` iterations, from one inference copy of the sampler."""
    grid_due = hooks.samples is not None and schedule.grid_due(done)
    eval_due = evaluate and hooks.evaluator is not None and schedule.eval_due(done)
    if grid_due or eval_due:
        sampler = run.trainer.inference_generator()
        if grid_due:
            hooks.samples(done, sampler)
        if eval_due:
            hooks.evaluator(sampler, run.preset, done, hooks.log)
