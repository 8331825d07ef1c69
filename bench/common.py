"""What the benchmarks share: where things are, the machine line, training runs and scoring.

Training runs are ``python -m genmnist.train`` subprocesses (one per run, as a user
would start them), so a benchmark measures the command line itself.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from genmnist import evaluate, precision, rundir, sample, trained
from genmnist.classifier import load_classifier
from genmnist.data import load_mnist, real_mnist_dir
from genmnist.models import BatchNorm, SamplingStatistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = real_mnist_dir()
RESULTS = os.path.join(ROOT, "bench", "results")
MACHINE = precision.cpu_description()  # the CPU line every results file names: model, usable cores, flags


def machine():
    """The machine record of a timed benchmark: :data:`MACHINE`, the flags behind it (whether bfloat16 is
    native), the software, and the load average at the start (the machines are shared)."""
    import keras
    import tensorflow as tf
    return {"cpu": MACHINE, "cpu_flags": sorted(precision.cpu_flags() & set(precision.REPORTED_CPU_FLAGS)),
            "cpu_vendor": precision.cpu_vendor(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "load_average_start": os.getloadavg()}


def shown_path(path):
    """``path`` as a results file records it: relative to the repository where it lies beside it (the data
    in ../shared), so a report names no directory of the machine it ran on; other paths as they are."""
    if not os.path.isabs(path):
        return path
    relative = os.path.relpath(path, ROOT)
    return relative if not relative.startswith(os.path.join(os.pardir, os.pardir)) else path


def command_line(module):
    """How this benchmark was started, as a user would type it (``python -m bench.NAME ARGS``), its
    paths as :func:`shown_path` writes them."""
    args = [f"{arg.split('=', 1)[0]}={shown_path(arg.split('=', 1)[1])}" if arg.startswith("--") and "=" in arg
            else shown_path(arg) for arg in sys.argv[1:]]
    return " ".join(["python", "-m", module, *args])


def write_report(results_dir, stem, info, markdown):
    """Write ``stem``.json (the raw ``info``) and ``stem``.md (``markdown(info)``) and print the markdown."""
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, f"{stem}.json"), "w") as f:
        json.dump(info, f, indent=2)
    report = markdown(info)
    with open(os.path.join(results_dir, f"{stem}.md"), "w") as f:
        f.write(report)
    print(report)


def run_module(module, args, log_path=None, append=False, check=False):
    """``python -m module args`` in the repository; (exit code, wall seconds).

    Output goes to ``log_path`` (stdout and stderr) or, without one, stdout is dropped.
    """
    start = time.perf_counter()
    cmd = [sys.executable, "-m", module, *args]
    if log_path is None:
        code = subprocess.run(cmd, cwd=ROOT, check=check, stdout=subprocess.DEVNULL).returncode
    else:
        with open(log_path, "a" if append else "w") as log:
            code = subprocess.run(cmd, cwd=ROOT, check=check, stdout=log, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def has_checkpoints(run_dir):
    """Whether the run saved a checkpoint to resume from (a run killed before its first one starts afresh)."""
    return rundir.latest_checkpoint(run_dir) is not None


def reached(run_dir, steps):
    """Whether the run kept a checkpoint of ``steps``."""
    return os.path.exists(rundir.path(run_dir, rundir.CHECKPOINTS, f"ckpt-{steps}.index"))


def train(run_dir, steps, data_dir, flags=(), log_path=None, check=False):
    """Train ``run_dir`` up to ``steps`` with genmnist.train (no export); (exit code, wall seconds).

    Nothing runs when a checkpoint of ``steps`` exists (0 seconds); a run with earlier
    checkpoints is resumed, which continues exactly as an uninterrupted run would.
    """
    if reached(run_dir, steps):
        return 0, 0.0
    resume = has_checkpoints(run_dir)
    args = ["--out", run_dir, "--steps", str(steps), "--data-dir", data_dir, "--no-export", *flags]
    return run_module("genmnist.train", args + (["--resume"] if resume else []), log_path, append=resume,
                      check=check)


def scoring_reference(data_dir, num):
    """The pinned evaluation classifier, the real test split prepared for it, and the real-vs-real
    metrics of ``num`` train images: what every benchmark row is scored against."""
    classifier = load_classifier()
    real = evaluate.prepare_real(classifier, load_mnist(data_dir, "test").images)
    ceiling = evaluate.evaluate_images(load_mnist(data_dir, "train").images[:num], classifier, real)
    return classifier, real, ceiling


def add_collect_flags(parser, collect_help, metavar):
    """--collect (train nothing: rebuild the table from earlier results) and --notes, which a rebuilt
    table keeps."""
    parser.add_argument("--collect", nargs="+", metavar=metavar, help="train nothing: " + collect_help)
    parser.add_argument("--notes", metavar="MD", help="markdown appended to the results table (where the rows "
                                                      "come from), so that a rebuilt table keeps it")


def timing_parser(doc, data_dir_help):
    """The flags every speed benchmark shares: the data, the precisions timed, where results go."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data-dir", default=DATA_DIR, help=data_dir_help)
    p.add_argument("--precisions", nargs="+", choices=precision.PRECISIONS, default=["float32", "mixed_bfloat16"],
                   help="precisions of the default preset to time; add mixed_float16 on a GPU (CPUs have no "
                        "fast float16 kernels)")
    p.add_argument("--results", default=RESULTS)
    return p


def notes(path):
    """The lines of a hand-written markdown file to append to a results table (none without one)."""
    if not path:
        return []
    with open(path) as f:
        return [""] + f.read().rstrip().splitlines()


def sampling_modes(preset):
    """The batch-norm statistics a preset samples with, then the others a benchmark compares it with."""
    own = preset.sampling_stats
    return [own] + [m for m in ("moving", "recomputed", "batch") if m != own]


def evaluate_run(run_dir, classifier, real, num, seed, step=None):
    """Metrics per sampling variant of the run's latest checkpoint (or of ``step``).

    'preset' is what the run samples from; for batch-norm generators 'bn-MODE' is the
    same generator normalised otherwise: 'moving' (the moving averages as trained),
    'recomputed' (statistics recomputed for the final weights) or 'batch' (the sampling
    batch's own).  A run that keeps a weight average (``--ema``) is also scored on G's
    own weights ('no-ema ...'): the average does not change training, so one run
    measures both.
    """
    preset = rundir.read_config(run_dir)["preset"]
    results = {}
    for average in (True, False) if preset.ema_decay else (True,):
        generator, preset = trained.restore_generator(run_dir, average, step)
        has_batch_norm = any(isinstance(layer, BatchNorm) for layer in generator.layers)
        modes = sampling_modes(preset) if has_batch_norm else [None]
        prefix = "" if average else "no-ema "
        for mode in sorted(modes, key=["moving", "recomputed", "batch", None].index):  # recompute after 'moving'
            if mode:
                SamplingStatistics(generator, mode)()
            pixels = sample.generate(generator, preset, num, seed)
            label = "preset" if mode == modes[0] else f"bn-{mode}"
            results[prefix + label] = evaluate.evaluate_images(pixels, classifier, real)
            if label == "preset" and not prefix:
                preset_pixels = pixels
    return results, preset_pixels
