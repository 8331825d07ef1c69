"""Train the GAN on MNIST: ``python -m genmnist.train --help``.

The schedule is the legacy one: ``warmup_d_steps`` D-only steps, then per
iteration one D step and one G step on the same z.  Batches and noise are
pure functions of (seed, batch index), so a resumed run continues exactly as
an uninterrupted one would, and the checkpoint needs only models, optimizers
and the step counter.
"""

import argparse
import csv
import datetime
import math
import os
import platform
import signal
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from genmnist import convert, images, precision, rundir
from genmnist.data import batches, load_mnist
from genmnist.errors import UserError, exit_on_user_error
from genmnist.export import export_generator
from genmnist.models import Z_DIM, legacy_variables
from genmnist.losses import USER_LOSSES
from genmnist.presets import MODELS, PRESETS, get_preset
from genmnist.training import GANTrainer

NUM_SAMPLES = 64  # the fixed-noise grid is 8x8


def is_milestone(iteration):
    """The legacy DISPLAY_STEP cadence: 0, 10, ..., 90, 100, 200, ..., 900, 1000, 2000, ..."""
    if iteration < 10:
        return iteration == 0
    return iteration % 10 ** int(math.log10(iteration)) == 0


def noise(batch_size, seed, batch_index, n_critic=None):
    """z ~ N(0, 1) for one batch ([b, n_critic, z] when given), keyed by (seed, batch index) so runs replay."""
    shape = [batch_size, Z_DIM] if n_critic is None else [batch_size, n_critic, Z_DIM]
    return tf.random.stateless_normal(shape, seed=[seed, batch_index])


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m genmnist.train",
        description="Train the legacy DCGAN-style MNIST GAN on TensorFlow 2. Writes checkpoints, "
                    "sample grids at the legacy milestones (0, 10, .., 100, 200, .., 1000, 2000, ..), "
                    "a progress GIF, TensorBoard logs and an exported generator into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="'legacy' reproduces the legacy code, bugs included (pixels in [0, 1], raw-log "
                        "losses, untrained batch-norm offsets, batch statistics at sampling); 'default' "
                        "fixes them (see README)")
    p.add_argument("--model", choices=sorted(MODELS), default="dcgan",
                   help="'dcgan': the legacy GANModel (batch-norm generator, average-pooled D); 'wgan': the "
                        "legacy WGANModel (sigmoid generator, strided leaky-ReLU critic), trained as WGAN-GP")
    p.add_argument("--loss", choices=USER_LOSSES, default=None,
                   help="GAN loss (default: the preset's; dcgan legacy: raw-log, dcgan default: nonsaturating, "
                        "wgan: wgan-gp). wgan/wgan-gp bring 5 critic steps per G step, wgan brings --clip 0.01, "
                        "wgan-gp a penalty of 10; the critic losses use D's raw score, never a sigmoid")
    p.add_argument("--n-critic", type=int, default=None, help="D steps per G step (default: the loss's)")
    p.add_argument("--clip", type=float, default=None,
                   help="WGAN weight clipping bound (default: 0.01 with --loss wgan, else off)")
    p.add_argument("--gp-weight", type=float, default=None,
                   help="WGAN-GP gradient penalty weight (default: 10 with --loss wgan-gp, else off)")
    p.add_argument("--spectral-norm", action="store_true",
                   help="spectral normalisation on every discriminator layer")
    p.add_argument("--pixel-range", choices=("-1,1", "0,1"), default=None,
                   help="what real pixels are scaled to (default: the preset's; legacy 0,1, default -1,1)")
    p.add_argument("--label-smoothing", type=float, default=None,
                   help="one-sided label smoothing: D's target for real images is 1 - this "
                        "(minimax/nonsaturating losses; default: the preset's)")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="sample and export from an exponential moving average of G's weights with this "
                        "decay, e.g. 0.999 (0: off; default: the preset's)")
    p.add_argument("--steps", type=int, default=10000,
                   help="training iterations (one D and one G update each), after the D-only warm-up; "
                        "the legacy script's length is 10000")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="Adam learning rate for both networks (default: the preset's; legacy 0.0005, default 0.0002)")
    p.add_argument("--beta1", type=float, default=None,
                   help="Adam beta1 (default: the preset's; legacy 0.9, default 0.5)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds weights, batch order and noise; same seed on the same machine, same run")
    p.add_argument("--data-dir", default=None,
                   help="directory with train-images-idx3-ubyte[.gz] (+ labels) or the legacy mnist_train.csv; "
                        "default: download MNIST with tensorflow-datasets")
    p.add_argument("--out", default=None,
                   help="run directory (default: runs/YYYYmmdd-HHMMSS)")
    p.add_argument("--init-from", default=None, metavar="LEGACY_CKPT",
                   help="start a new dcgan run from the weights of a legacy name-based checkpoint (a "
                        "legacy_v1.train output or genmnist.convert --to-legacy) instead of the seeded "
                        "initialisers; the seed still drives data order and noise")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint; its preset, seed and batch "
                        "size are kept, --steps may extend it")
    p.add_argument("--checkpoint-every", type=int, default=500, help="iterations between checkpoints")
    p.add_argument("--keep-checkpoints", type=int, default=3, metavar="N",
                   help="how many of the latest checkpoints to keep (0: every one, e.g. to score a run "
                        "again at each budget it stopped at)")
    p.add_argument("--log-every", type=int, default=10,
                   help="iterations between progress lines and TensorBoard scalars (also the NaN check)")
    p.add_argument("--sample-every", type=int, default=0,
                   help="also write a sample grid every N iterations (0: only at the legacy milestones)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                   help="tf.distribute strategy: 'mirrored' splits each batch across this machine's GPUs "
                        "(or --logical-cpus CPU devices); 'multiworker' across the machines named in TF_CONFIG. "
                        "Batch norm statistics are synchronised, so results match one device")
    p.add_argument("--logical-cpus", type=int, default=0,
                   help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="every N iterations, score --eval-num samples with genmnist.evaluate (classifier "
                        "score, Frechet distance, class coverage, precision/recall) into TensorBoard and "
                        "RUN/eval.csv; the first use trains and caches the MNIST classifier (minutes)")
    p.add_argument("--eval-num", type=int, default=2000, help="samples per evaluation (at least 129)")
    p.add_argument("--no-export", action="store_true", help="skip exporting the generator at the end")
    p.add_argument("--precision", choices=precision.PRECISIONS + (precision.AUTO,), default=precision.DEFAULT,
                   help="float32, or mixed: layers compute in bfloat16/float16, variables, Adam state, "
                        "batch-norm statistics and losses stay float32. 'auto': mixed_bfloat16 where the "
                        "hardware has bfloat16 (CPU flags amx_bf16/avx512_bf16, GPU compute capability 8+) "
                        "for a non-legacy preset, else float32. Legacy presets are float32 only. The "
                        "resolved choice is printed and stored in config.json; --resume keeps it")
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "checkpoint_every", "log_every", "n_critic", "eval_num"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.keep_checkpoints < 0:
        p.error("--keep-checkpoints must be 0 (keep every one) or positive")
    if args.resume and not args.out:
        p.error("--resume needs --out RUN_DIR")
    if args.init_from and (args.resume or args.model != "dcgan"):
        p.error("--init-from starts a new dcgan run (the legacy checkpoint names are GANModel's)")
    return args


def _run_config(args):
    """The settings that define a run; stored in RUN/config.json, reused by --resume."""
    if args.resume:
        config = rundir.read_config(args.out)
        config.setdefault("precision", "float32")  # runs from before --precision existed
        print(f"resuming {args.out} with its own preset {config['preset'].name}, seed {config['seed']}, "
              f"batch size {config['batch_size']} and precision {config['precision']}", file=sys.stderr)
        config["steps"] = args.steps
        config["data_dir"] = args.data_dir if args.data_dir is not None else config["data_dir"]
        return config
    if os.path.isdir(rundir.path(args.out, rundir.CHECKPOINTS)):
        raise UserError(f"{args.out} already holds a run; pass --resume to continue it or choose another --out")
    preset = get_preset(args.model, args.preset)
    if args.loss:
        preset = preset.with_loss(args.loss)
    preset = preset.replace(learning_rate=args.learning_rate, beta1=args.beta1, n_critic=args.n_critic,
                            clip=args.clip, gp_weight=args.gp_weight,
                            spectral_norm=args.spectral_norm or None,
                            label_smoothing=args.label_smoothing, ema_decay=args.ema,
                            pixel_range=tuple(map(float, args.pixel_range.split(","))) if args.pixel_range else None)
    return {"preset": preset, "seed": args.seed, "batch_size": args.batch_size, "steps": args.steps,
            "precision": precision.resolve(args.precision, preset),
            "data_dir": args.data_dir, "command": " ".join(sys.argv),
            "init_from": os.path.abspath(args.init_from) if args.init_from else None,
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}


@tf.function(autograph=False)  # nothing to convert; AutoGraph would re-read this file at the first call
def _all_finite(variables):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])


class Progress:
    """One status line: a bar, the losses, D(x), D(G(z)) and steps/s; rewritten in place on a terminal."""

    def __init__(self, total, first):
        self.total, self.tty = total, sys.stderr.isatty()
        self.last_step, self.last_time = first, time.perf_counter()

    def update(self, step, metrics):
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        done = int(30 * step / self.total)
        eta = (self.total - step) / rate if rate > 0 else 0
        line = (f"[{'#' * done}{'.' * (30 - done)}] {step}/{self.total} "
                f"d_loss {metrics['d_loss']:.4f} g_loss {metrics['g_loss']:.4f} "
                f"D(x) {metrics['d_real']:.3f} D(G(z)) {metrics['d_fake']:.3f} "
                f"{rate:.2f} steps/s ETA {datetime.timedelta(seconds=int(eta))}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        return rate

    def close(self):
        if self.tty:
            print(file=sys.stderr)


def train(args):
    config = _run_config(args)
    run_dir = args.out
    preset, seed, batch_size = config["preset"], config["seed"], config["batch_size"]
    if preset.gp_weight:
        # The penalty's double backprop sums gradient contributions in an order that
        # depends on TF's inter-op thread scheduling; one inter-op thread makes the
        # run repeatable (measured: two same-seed WGAN-GP runs differed without it).
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already running in this process (e.g. called from Python)
            print("note: TensorFlow is already initialised; this WGAN-GP run may not be bit-repeatable",
                  file=sys.stderr)
    keras.utils.set_random_seed(seed)

    data = load_mnist(config["data_dir"], "train").images
    strategy = make_strategy(args.strategy)
    with strategy.scope(), precision.policy(config["precision"]):
        generator, discriminator = rundir.build_models(preset)
    try:
        trainer = GANTrainer(generator, discriminator, preset, seed=seed, strategy=strategy)
    except ValueError as err:
        raise UserError(str(err)) from None
    if config.get("init_from") and not args.resume:
        values, prefix = convert.read_legacy(config["init_from"])
        convert.assign_legacy(values, legacy_variables(generator, discriminator), prefix)
        trainer.sync_sampler()
    chief = is_chief(strategy)
    step = tf.Variable(0, dtype=tf.int64, name="step")
    extra = {"ema_generator": trainer.sampler} if preset.ema_decay else {}
    # Every multi-worker replica must take part in saving; only the chief's copy is kept.
    checkpoint_dir = run_dir if chief else tempfile.mkdtemp(prefix="genmnist-worker-")
    manager = rundir.checkpoint_manager(
        checkpoint_dir, args.keep_checkpoints or None, generator=generator, discriminator=discriminator,
        g_optimizer=trainer.g_optimizer, d_optimizer=trainer.d_optimizer, rng=trainer.rng, step=step, **extra)
    if args.resume:
        if manager.latest_checkpoint is None:
            raise UserError(f"{run_dir} has no checkpoint to resume from; start it again without --resume")
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    if chief:
        rundir.write_config(run_dir, {**config, "preset": preset.to_dict()})

    start = int(step.numpy())
    total = config["steps"]
    if start >= total:
        print(f"{run_dir} is already at step {start} of {total}; raise --steps to train further", file=sys.stderr)
        return 0
    first_batch = 0 if start == 0 else preset.warmup_d_steps + start
    reals = batches(data, batch_size, preset.pixel_range, seed, first_batch)

    def batch_noise(k):  # a named function: AutoGraph warns that it cannot parse this as a lambda
        return noise(batch_size, seed, k, preset.n_critic)
    zs = tf.data.Dataset.range(first_batch, 2**62).map(batch_noise)
    stream = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.zip(reals, zs).prefetch(2)))
    fixed_z = noise(NUM_SAMPLES, seed, -1)
    writer = (tf.summary.create_file_writer(rundir.path(run_dir, rundir.LOGS)) if chief
              else tf.summary.create_noop_writer())
    samples_dir = rundir.path(run_dir, rundir.SAMPLES)

    def save_samples(iteration, sampler):
        if not chief:
            return
        pixels = images.to_uint8(sampler(fixed_z, training=False), preset.pixel_range)
        picture = images.grid(pixels)
        images.write_png(os.path.join(samples_dir, f"step_{iteration:06d}.png"), picture)
        images.write_gif(images.milestone_pngs(samples_dir), rundir.path(run_dir, "progress.gif"))
        with writer.as_default():
            tf.summary.image("samples", picture[None, :, :, None], step=iteration)

    evaluator = (Evaluator(run_dir, config["data_dir"], args.eval_num, seed, start)
                 if args.eval_every and chief else None)

    def save_checkpoint(reason):
        if not bool(_all_finite(generator.variables + discriminator.variables)):
            raise FloatingPointError("weights are not finite")
        path = manager.save(checkpoint_number=int(step.numpy()))
        print(f"\ncheckpoint ({reason}) at step {int(step.numpy())}: {path}", file=sys.stderr)

    print(f"training {run_dir}: preset {preset.name}, {len(data)} images, batch {batch_size}, "
          f"steps {start}..{total}, seed {seed}, precision {config['precision']}", file=sys.stderr)
    if start == 0:
        for _ in range(preset.warmup_d_steps):
            real, z = next(stream)
            trainer.discriminator_step(real, z)
    progress = Progress(total, start)
    metrics = None
    try:
        for iteration in range(start, total):
            metrics = trainer.train_step(*next(stream))
            step.assign_add(1)
            done = iteration + 1
            if done % args.log_every == 0 or done == total:
                values = {k: float(v) for k, v in metrics.items()}
                if not all(map(math.isfinite, values.values())):
                    raise FloatingPointError(f"loss is not finite at step {done} "
                                             f"(d_loss={values['d_loss']}, g_loss={values['g_loss']})")
                rate = progress.update(done, values)
                with writer.as_default():
                    for name, tag in (("d_loss", "d_loss"), ("g_loss", "g_loss"),
                                      ("d_real", "D(x)"), ("d_fake", "D(G(z))")):
                        tf.summary.scalar(tag, values[name], step=done)
                    tf.summary.scalar("steps_per_sec", rate, step=done)
            grid_due = is_milestone(iteration) or iteration == total - 1 or (
                args.sample_every and done % args.sample_every == 0)
            eval_due = evaluator and (done % args.eval_every == 0 or done == total)
            if grid_due or eval_due:
                sampler = trainer.inference_generator()  # one copy per step, for both
                if grid_due:
                    save_samples(iteration, sampler)
                if eval_due:
                    evaluator(sampler, preset, done, writer)
            if done % args.checkpoint_every == 0 and done != total:
                save_checkpoint("periodic")
    except KeyboardInterrupt:
        progress.close()
        save_checkpoint("interrupted")
        print(f"interrupted; continue with: python -m genmnist.train --out {run_dir} --resume "
              f"--steps {total}", file=sys.stderr)
        return 130
    except FloatingPointError as err:
        progress.close()
        last = manager.latest_checkpoint or "none"
        print(f"error: training diverged: {err}; last good checkpoint: {last}. The legacy preset's "
              "raw-log losses do this once D saturates; --preset default uses stable losses.",
              file=sys.stderr)
        return 3
    progress.close()
    save_checkpoint("final")
    writer.flush()
    if chief and not args.no_export:
        export_dir = export_generator(trainer.inference_generator(), preset, rundir.path(run_dir, rundir.EXPORT))
        print(f"exported generator to {export_dir}", file=sys.stderr)
    print(f"done: samples in {samples_dir}, progress.gif, checkpoints in "
          f"{rundir.path(run_dir, rundir.CHECKPOINTS)}", file=sys.stderr)
    return 0


class Evaluator:
    """``--eval-every``: sample quality during training, to TensorBoard (eval/*) and RUN/eval.csv."""

    COLUMNS = ("step", "classifier_score", "frechet_distance", "precision", "recall",
               "class_kl_uniform", "classes_covered")

    def __init__(self, run_dir, data_dir, num, seed, start_step=0):
        from genmnist import evaluate
        from genmnist.classifier import get_classifier

        self.evaluate, self.num, self.seed = evaluate, num, seed
        self.classifier = get_classifier(data_dir, log=lambda m: print(m, file=sys.stderr))
        self.evaluate.check_images(np.zeros((num, 28, 28), np.uint8), self.evaluate.min_images(self.classifier),
                                   what="--eval-num")
        self.real = evaluate.prepare_real(self.classifier, load_mnist(data_dir, "test").images)
        self.csv_path = os.path.join(run_dir, "eval.csv")
        self._drop_rows_after(start_step)

    def _drop_rows_after(self, step):
        """A killed run resumes from its last checkpoint and evaluates the steps after it
        again: drop the rows it wrote for them, so each step has one row."""
        if not os.path.exists(self.csv_path):
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if int(r["step"]) <= step]
        if len(kept) < len(rows):
            with open(self.csv_path, "w", newline="") as f:
                out = csv.DictWriter(f, self.COLUMNS)
                out.writeheader()
                out.writerows(kept)

    def __call__(self, generator, preset, step, writer):
        from genmnist.sample import generate

        metrics = self.evaluate.evaluate_images(generate(generator, preset, self.num, self.seed),
                                                self.classifier, self.real)
        row = {"step": step, **{k: metrics[k] for k in self.COLUMNS[1:]}}
        with writer.as_default():
            for name in self.COLUMNS[1:]:
                tf.summary.scalar(f"eval/{name}", row[name], step=step)
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            out = csv.DictWriter(f, self.COLUMNS)
            if new:
                out.writeheader()
            out.writerow(row)
        print(f"\neval at step {step}: " + ", ".join(f"{k} {row[k]:.3f}" for k in self.COLUMNS[1:]),
              file=sys.stderr)


def make_strategy(name):
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Only one process writes samples, logs and the kept checkpoint (task 0 of a multi-worker job)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


def split_cpu(count):
    """Expose the CPU as ``count`` logical devices; must run before TensorFlow starts."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    if args.out is None:
        args.out = os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    if args.logical_cpus > 1:
        split_cpu(args.logical_cpus)
    with exit_on_user_error("genmnist.train"):
        return train(args)


if __name__ == "__main__":
    sys.exit(main())
