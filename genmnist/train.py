"""Train the GAN on MNIST: ``python -m genmnist.train --help``.

The schedule is the legacy one: ``warmup_d_steps`` D-only steps, then per
iteration one D step and one G step on the same z.  Batches and noise are
pure functions of (seed, batch index), so a resumed run continues exactly as
an uninterrupted one would, and the checkpoint needs only models, optimizers
and the step counter.
"""

import contextlib
import datetime
import os
import platform
import sys

from genmnist import TF_LOG_HINT, argtypes, precision
from genmnist.defaults import CHECKPOINT_EVERY, EVAL_NUM, KEEP_CHECKPOINTS, LOG_EVERY
from genmnist.errors import INTERRUPTED, UserError, exit_on_user_error, starting
from genmnist.presets import LOSS_SCHEDULES, MODELS, PRESETS, RUN_BUDGET_MINUTES, USER_LOSSES, get_preset

# TensorFlow and the modules built on it are imported by the functions that use them, after
# the flags are parsed: --help and a mistyped flag answer at once.


def _by_preset(field, unset=None):
    """'MODEL PRESET: VALUE, ...' of one preset field, for --help: the values are read from the presets.
    ``unset``: what a value of 0 means, shown in its place."""
    def show(value):
        if unset is not None and not value:
            return unset
        if isinstance(value, tuple):
            return ",".join(f"{v:g}" for v in value)
        return f"{value:g}" if isinstance(value, float) else str(value)
    return ", ".join(f"{model} {name}: {show(getattr(preset, field))}"
                     for model, presets in MODELS.items() for name, preset in presets.items())


def parse_args(argv=None):
    wgan, wgan_gp = LOSS_SCHEDULES["wgan"], LOSS_SCHEDULES["wgan-gp"]
    p = argtypes.Parser(
        prog="python -m genmnist.train",
        description="Train the legacy DCGAN-style MNIST GAN on TensorFlow 2. Writes checkpoints, "
                    "sample grids at the legacy milestones (0, 10, .., 100, 200, .., 1000, 2000, ..), "
                    "a progress GIF, TensorBoard logs and an exported generator into --out.",
        epilog=TF_LOG_HINT, formatter_class=argtypes.DefaultsFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="'legacy' reproduces the legacy code, bugs included (pixels in [0, 1], raw-log "
                        "losses, untrained batch-norm offsets, batch statistics at sampling); 'default' "
                        "fixes them (see README)")
    p.add_argument("--model", choices=sorted(MODELS), default="dcgan",
                   help="'dcgan': the legacy GANModel (batch-norm generator, average-pooled D); 'wgan': the "
                        "legacy WGANModel (sigmoid generator, strided leaky-ReLU critic), trained as WGAN-GP")
    p.add_argument("--loss", choices=USER_LOSSES, default=None,
                   help=f"GAN loss (default: the preset's; {_by_preset('loss')}). wgan/wgan-gp bring "
                        f"{wgan['n_critic']} critic steps per G step, wgan brings --clip {wgan['clip']:g}, wgan-gp a "
                        f"penalty of {wgan_gp['gp_weight']:g}; the critic losses use D's raw score, never a sigmoid")
    p.add_argument("--n-critic", type=argtypes.positive_int, default=None,
                   help="D steps per G step (default: the loss's); more of them shorten the default run length "
                        "in proportion, to the same number of D updates")
    p.add_argument("--warmup-d-steps", type=argtypes.non_negative_int, default=None, metavar="N",
                   help="D-only steps before the first iteration, as the legacy script took (default: the "
                        f"preset's; {_by_preset('warmup_d_steps')})")
    p.add_argument("--clip", type=argtypes.non_negative_float, default=None,
                   help=f"WGAN weight clipping bound (default: {wgan['clip']:g} with --loss wgan, else off)")
    p.add_argument("--gp-weight", type=argtypes.non_negative_float, default=None,
                   help=f"WGAN-GP gradient penalty weight (default: {wgan_gp['gp_weight']:g} with --loss wgan-gp, "
                        "else off)")
    p.add_argument("--r1", type=argtypes.non_negative_float, default=None, metavar="GAMMA",
                   help="R1 penalty on real images: D's loss += GAMMA / 2 mean ||grad_x D(x)||^2 (0: off; default: "
                        "the preset's; off once --loss is given, even the preset's own: add --r1 to keep it; "
                        f"{_by_preset('r1_weight')})")
    p.add_argument("--penalty-fraction", type=argtypes.positive_fraction, default=None,
                   help="compute the gradient penalty and R1 on this share of each batch (default: the preset's, "
                        f"1 once --loss is given; {_by_preset('penalty_fraction')})")
    p.add_argument("--r1-every", type=argtypes.positive_int, default=None, metavar="N",
                   help="lazy R1: compute it on every Nth D step only, weighted N times, so D sees the same "
                        "penalty on average at about 1/N of its cost; the logged penalty is then N times R1 on "
                        "those steps and 0 between them (default: the preset's, 1 once --loss is given; "
                        f"{_by_preset('r1_every')})")
    p.add_argument("--spectral-norm", action="store_true",
                   help="spectral normalisation on every discriminator layer")
    p.add_argument("--pixel-range", choices=("-1,1", "0,1"), default=None, metavar="LOW,HIGH",
                   help="what real pixels are scaled to: 0,1 or -1,1 (default: the preset's; "
                        f"{_by_preset('pixel_range')})")
    p.add_argument("--label-smoothing", type=argtypes.fraction, default=None,
                   help="one-sided label smoothing: D's target for real images is 1 - this "
                        f"(minimax/nonsaturating losses; default: the preset's; {_by_preset('label_smoothing')})")
    p.add_argument("--ema", type=argtypes.fraction, default=None, metavar="DECAY",
                   help="sample and export from an exponential moving average of G's weights with this "
                        "decay, e.g. 0.999, warmed up (--ema-warmup K): G step t averages with "
                        "min(DECAY, (1 + t) / (K + t)), so with K 10 DECAY acts from about step 9 / (1 - DECAY) on, "
                        f"9000 for 0.999 (0: off; default: the preset's; {_by_preset('ema_decay')})")
    p.add_argument("--ema-warmup", type=argtypes.positive_float, default=None, metavar="K",
                   help="the average's warm-up: G step t averages with min(DECAY, (1 + t) / (K + t)), so until "
                        "DECAY acts the average spans about t / (K - 1) steps; a smaller K, a longer average "
                        f"(default: the preset's; {_by_preset('ema_warmup')})")
    penalty_run = get_preset("dcgan", "default").with_loss("wgan-gp")
    p.add_argument("--steps", type=argtypes.positive_int, default=None,
                   help="training iterations (one G update and --n-critic D updates each), after the D-only "
                        f"warm-up (default: the preset's; {_by_preset('run_steps')}: the legacy script's length, "
                        f"and for the default preset what fits {RUN_BUDGET_MINUTES} minutes on an idle 2-core CPU, "
                        "start-up and export included, timed in bench/results/default_run.md; where the run trains "
                        "in mixed_bfloat16, faster per step: "
                        f"{_by_preset('run_steps_bfloat16', unset='the same')}; a loss or --n-critic that changes "
                        "the preset's critic steps per G step rescales it to the same number of D updates, e.g. "
                        f"--loss wgan-gp's {penalty_run.n_critic} on the default: {penalty_run.run_steps_bfloat16} "
                        "in bfloat16). With --resume: the run's own unless given")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=None,
                   help=f"images per batch (default: the preset's; {_by_preset('run_batch_size')})")
    p.add_argument("--learning-rate", type=argtypes.positive_float, default=None,
                   help="G's Adam rate, and D's unless the preset or --d-learning-rate sets one (default: the "
                        f"preset's; {_by_preset('learning_rate')})")
    p.add_argument("--d-learning-rate", type=argtypes.positive_float, default=None,
                   help="D's Adam rate when it should differ from G's (two time-scale updates; default: the "
                        f"preset's; {_by_preset('d_learning_rate', unset='as G')})")
    p.add_argument("--lr-decay-steps", type=argtypes.non_negative_int, default=None, metavar="N",
                   help="both rates fall linearly to 0 over N iterations (0: constant; default: the preset's; "
                        f"{_by_preset('lr_decay_steps')})")
    p.add_argument("--beta1", type=argtypes.fraction, default=None,
                   help=f"Adam beta1 (default: the preset's; {_by_preset('beta1')})")
    p.add_argument("--beta2", type=argtypes.fraction, default=None,
                   help=f"Adam beta2 (default: the preset's; {_by_preset('beta2')})")
    p.add_argument("--seed", type=argtypes.seed, default=0,
                   help="seeds weights, batch order and noise; same seed on the same machine, same run")
    p.add_argument("--data-dir", default=None,
                   help="directory with train-images-idx3-ubyte[.gz] (+ labels) or the legacy mnist_train.csv; "
                        "default: download MNIST with tensorflow-datasets")
    p.add_argument("--out", default=None, metavar="RUN_DIR",
                   help="run directory; default: runs/YYYYmmdd-HHMMSS, the start time")
    p.add_argument("--init-from", default=None, metavar="LEGACY_CKPT",
                   help="start a new dcgan run from the weights of a legacy name-based checkpoint (a "
                        "legacy_v1.train output or genmnist.convert --to-legacy) instead of the seeded "
                        "initialisers; the seed still drives data order and noise")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint; its preset, seed and batch "
                        "size are kept, --steps may extend it")
    p.add_argument("--checkpoint-every", type=argtypes.positive_int, default=CHECKPOINT_EVERY,
                   help="iterations between checkpoints")
    p.add_argument("--keep-checkpoints", type=argtypes.non_negative_int, default=KEEP_CHECKPOINTS, metavar="N",
                   help="how many of the latest checkpoints to keep (0: every one, e.g. to score a run "
                        "again at each budget it stopped at)")
    p.add_argument("--log-every", type=argtypes.positive_int, default=LOG_EVERY,
                   help="iterations between progress lines and TensorBoard scalars (also the NaN check)")
    p.add_argument("--sample-every", type=argtypes.non_negative_int, default=0,
                   help="also write a sample grid every N iterations (0: only at the legacy milestones)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                   help="tf.distribute strategy: 'mirrored' splits each batch across this machine's GPUs "
                        "(or --logical-cpus CPU devices); 'multiworker' across the machines named in TF_CONFIG. "
                        "Batch norm statistics are synchronised, so results match one device")
    p.add_argument("--logical-cpus", type=argtypes.non_negative_int, default=0,
                   help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    p.add_argument("--eval-every", type=argtypes.non_negative_int, default=0,
                   help="every N iterations, score --eval-num samples with genmnist.evaluate (classifier "
                        "score, Frechet distance, class coverage, precision/recall) into TensorBoard and "
                        "RUN/eval.csv, with the pinned evaluation classifier")
    p.add_argument("--eval-num", type=argtypes.positive_int, default=EVAL_NUM,
                   help="samples per evaluation (at least 129)")
    p.add_argument("--no-export", action="store_true", help="skip exporting the generator at the end")
    p.add_argument("--precision", choices=precision.PRECISIONS + (precision.AUTO,), default=precision.DEFAULT,
                   help="float32, or mixed: layers compute in bfloat16/float16, variables, Adam state, "
                        "batch-norm statistics and losses stay float32. 'auto' (the default): mixed_bfloat16 where "
                        "bfloat16 is faster than float32 (Intel CPU flag amx_bf16, AMD avx512_bf16, GPU compute "
                        "capability 8+) for a non-legacy preset (where bfloat16 was measured to keep sample "
                        "quality), else float32. Legacy presets are float32 only. The resolved choice is printed "
                        "and stored in config.json; --resume keeps it")
    args = p.parse_args(argv)
    if args.resume and not args.out:
        p.error("--resume needs --out RUN_DIR")
    if args.init_from and (args.resume or args.model != "dcgan"):
        p.error("--init-from starts a new dcgan run (the legacy checkpoint names are GANModel's)")
    args.given = argtypes.given_flags(p, argv) if args.resume else {}
    return args


def _pixel_range(text):
    """--pixel-range's LOW,HIGH as the preset field's (low, high)."""
    return tuple(map(float, text.split(",")))


_SETTING_OF_FLAG = {"preset": "name", "ema": "ema_decay", "r1": "r1_weight"}  # flags named unlike their setting
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
        wanted = _pixel_range(value) if name == "pixel_range" else value
        if wanted != stored:
            ignored.append(f"--{dest.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return ignored


def _run_config(args):
    """The settings that define a run; stored in RUN/config.json, reused by --resume."""
    import keras
    import tensorflow as tf

    from genmnist import rundir
    if args.resume:
        config = rundir.read_config(args.out, resume=True)
        print(f"resuming {args.out} with its own preset {config['preset'].name}, seed {config['seed']}, "
              f"batch size {config['batch_size']} and precision {config['precision']}", file=sys.stderr)
        ignored = ignored_on_resume(config, args.given)
        if ignored:
            print(f"ignoring {', '.join(ignored)}: a resumed run keeps the settings it was started with",
                  file=sys.stderr)
        config["steps"] = args.steps or config["steps"]
        config["data_dir"] = args.data_dir if args.data_dir is not None else config.get("data_dir")
        return config
    if rundir.latest_checkpoint(args.out):
        raise UserError(f"{args.out} already holds a run; pass --resume to continue it or choose another --out")
    preset = get_preset(args.model, args.preset)
    if args.loss:
        preset = preset.with_loss(args.loss)
    try:
        preset = preset.replace(learning_rate=args.learning_rate, d_learning_rate=args.d_learning_rate,
                                lr_decay_steps=args.lr_decay_steps, r1_weight=args.r1, r1_every=args.r1_every,
                                penalty_fraction=args.penalty_fraction, beta1=args.beta1, beta2=args.beta2,
                                n_critic=args.n_critic, warmup_d_steps=args.warmup_d_steps,
                                clip=args.clip, gp_weight=args.gp_weight, spectral_norm=args.spectral_norm or None,
                                label_smoothing=args.label_smoothing, ema_decay=args.ema, ema_warmup=args.ema_warmup,
                                pixel_range=_pixel_range(args.pixel_range) if args.pixel_range else None)
    except ValueError as err:  # the preset names the field; the flag has the same name
        raise UserError(str(err)) from None
    resolved = precision.resolve(args.precision, preset)
    return {"preset": preset, "seed": args.seed, "batch_size": args.batch_size or preset.run_batch_size,
            "steps": args.steps or preset.default_steps(resolved), "precision": resolved,
            "data_dir": args.data_dir, "command": " ".join(sys.argv),
            "init_from": os.path.abspath(args.init_from) if args.init_from else None,
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}


def train(args):
    from genmnist import loop, rundir
    from genmnist.data import load_mnist
    from genmnist.distribute import WORKER_LOST, make_strategy

    config = _run_config(args)
    preset, seed, total = config["preset"], config["seed"], config["steps"]
    loop.seed_everything(preset, seed)
    # Before anything starts TensorFlow: a multi-worker strategy must configure collective ops first.
    strategy = make_strategy(args.strategy)
    data = load_mnist(config["data_dir"], "train").images
    run = loop.build_run(config, args.out, strategy, args.keep_checkpoints or None, args.resume)
    if run.start >= total:
        print(f"{args.out} is already at step {run.start} of {total}; raise --steps to train further",
              file=sys.stderr)
        if run.chief and not args.no_export and not os.path.isdir(rundir.path(args.out, rundir.EXPORT)):
            _export(run, args.out)  # it was stopped during its final export
        return 0
    stream = loop.data_stream(data, preset, seed, config["batch_size"], run.start, run.strategy)
    print(f"training {args.out}: preset {preset.name}, {len(data)} images, batch {config['batch_size']}, "
          f"steps {run.start}..{total}, seed {seed}, precision {config['precision']}", file=sys.stderr)
    with loop.make_hooks(run, args.eval_every, args.eval_num) as hooks:
        loop.warm_up(run.trainer, stream, run.start)
        schedule = loop.Schedule(total, args.log_every, args.checkpoint_every, args.sample_every, args.eval_every)
        try:
            loop.train_loop(run, stream, schedule, hooks)
        except KeyboardInterrupt:
            hooks.checkpoint("interrupted")
            print(f"interrupted; continue with: python -m genmnist.train --out {args.out} --resume "
                  f"--steps {total}", file=sys.stderr)
            return INTERRUPTED
        except FloatingPointError as err:
            print(f"error: training diverged: {err}; last good checkpoint: {run.manager.latest_checkpoint or 'none'}. "
                  "The legacy preset's raw-log losses do this once D saturates; --preset default uses stable losses.",
                  file=sys.stderr)
            return 3
        except UserError:  # a grid, the GIF, the TensorBoard log or an evaluation could not be written: keep the steps
            hooks.checkpoint("stopped by the error below")
            raise
        except WORKER_LOST as err:
            last = rundir.latest_checkpoint(args.out)
            print(f"error: lost another worker ({type(err).__name__} in a collective op); last checkpoint: {last}. "
                  "Start every worker again with the same command plus --resume", file=sys.stderr)
            return 4
        hooks.checkpoint("final")
        hooks.log.flush()
        if run.chief and not args.no_export:
            _export(run, args.out)
    print(f"done: samples in {rundir.path(args.out, rundir.SAMPLES)}, {rundir.PROGRESS_GIF}, checkpoints in "
          f"{rundir.path(args.out, rundir.CHECKPOINTS)}", file=sys.stderr)
    return 0


def _export(run, run_dir):
    from genmnist import rundir
    from genmnist.export import export_generator

    export_dir = export_generator(run.trainer.inference_generator(), run.preset, rundir.path(run_dir, rundir.EXPORT))
    print(f"exported generator to {export_dir}", file=sys.stderr)


def _interrupted(run_dir, steps):
    """An interrupt outside the training loop (which saves its own): say what is saved and how to go on."""
    from genmnist import rundir

    if rundir.latest_checkpoint(run_dir):
        print(f"\ngenmnist.train: interrupted; continue with: python -m genmnist.train --out {run_dir} --resume"
              + (f" --steps {steps}" if steps else ""), file=sys.stderr)
    else:
        print("\ngenmnist.train: interrupted before the first training step; nothing saved: "
              "run the same command again", file=sys.stderr)
    return INTERRUPTED


def _locks_run_dir(args):
    """Every process but the non-chief workers of a multi-worker job writes --out, so holds its lock."""
    import tensorflow as tf

    from genmnist.distribute import chief_of
    return args.strategy != "multiworker" or chief_of(tf.distribute.cluster_resolver.TFConfigClusterResolver())


def main(argv=None):
    args = parse_args(argv)
    if args.out is None:
        args.out = os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    with starting("genmnist.train", __name__ == "__main__"):
        from genmnist import rundir
        from genmnist.distribute import split_cpu
    if args.logical_cpus > 1:
        split_cpu(args.logical_cpus)
    with exit_on_user_error("genmnist.train"):
        if args.resume:
            rundir.read_config(args.out, resume=True)  # before the lock would create a mistyped --out
        with rundir.locked(args.out) if _locks_run_dir(args) else contextlib.nullcontext():
            try:
                return train(args)
            except KeyboardInterrupt:
                return _interrupted(args.out, args.steps)


if __name__ == "__main__":
    sys.exit(main())
