"""The default command, whole: ``python -m genmnist.train --data-dir D --out RUN --seed S``, timed and scored.

    python -m bench.default_run --data-dir ../shared/data/mnist [--seeds 0 1 2] [--runs DIR] [--steps N]

What a user of the default gets: the wall time from start to exit (TensorFlow's start-up, data
loading, the warm-up, grids, checkpoints and the export included) against the budget the default
preset's run length is sized for (``presets.RUN_BUDGET_MINUTES``), when each checkpoint was written,
and the exported run's samples scored as every search row is (``bench.search.score``, the pinned
classifier), and so is the checkpoint written nearest :data:`EARLY_SECONDS` into the run (the early
checkpoint the quality bar also judges): each checkpoint is hard-linked aside as it is announced, since
the run keeps only its latest few.  Run it with the machine otherwise idle: each row records the load
average.  Rows accumulate in bench/results/default_run.{json,md}, each run's first 64 samples as a grid
in bench/results/default_run/.  ``--steps N`` times the same command at another length, a candidate for
the preset's (its rows say so).
"""

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from bench import common, search
from genmnist import argtypes, evaluate, rundir
from genmnist.presets import RUN_BUDGET_MINUTES, rate_text

STEM = "default_run"
CHECKPOINT_LINE = "checkpoint (periodic) at step "
EARLY_SECONDS = 5 * 60  # the early checkpoint the quality bar judges: the one written nearest this
BETA2_BEFORE = 0.999  # Adam's beta2 of every row timed before rows recorded it (the default preset's then)
LOSS_BEFORE = "nonsaturating"  # the loss of every row timed before rows recorded it (the default preset's then)
RATES_BEFORE = (4e-4, 8e-4)  # G's and D's Adam rates of every row timed before rows recorded them (the default's then)
KEPT = "kept-checkpoints"  # beside a timed run: hard links to every checkpoint it announced


def default_command(data_dir, run_dir, seed, steps=None):
    """The command a user runs: the data, where the run goes and its seed; every other setting the preset's
    (the length too, unless ``steps`` is given)."""
    length = ["--steps", str(steps)] if steps else []
    return [sys.executable, "-m", "genmnist.train", "--data-dir", data_dir, "--out", run_dir, "--seed", str(seed),
            *length]


def keep_checkpoint(prefix, kept_dir):
    """Hard-link the files of the checkpoint ``prefix`` into ``kept_dir``: the run may delete its own names."""
    os.makedirs(kept_dir, exist_ok=True)
    for name in glob.glob(glob.escape(prefix) + ".*"):
        os.link(name, os.path.join(kept_dir, os.path.basename(name)))


def time_command(cmd, log_path, kept_dir=None):
    """Run ``cmd`` with its output in ``log_path``; (exit code, wall s, CPU s, [(seconds, step)] of each
    periodic checkpoint it announced).  With ``kept_dir``, each announced checkpoint is kept there."""
    checkpoints = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=common.ROOT, stdout=log, stderr=subprocess.PIPE, text=True)
        for line in process.stderr:  # progress lines end in "\r" on a terminal only: here each is a line
            log.write(line)
            if line.startswith(CHECKPOINT_LINE):
                step, prefix = line[len(CHECKPOINT_LINE):].rstrip("\n").split(": ", 1)
                checkpoints.append((round(time.perf_counter() - start, 1), int(step)))
                if kept_dir:
                    keep_checkpoint(prefix, kept_dir)
        code = process.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, wall, cpu, checkpoints


def nearest_early(checkpoints):
    """The (seconds, step) of the checkpoint written nearest :data:`EARLY_SECONDS`, or None without one."""
    return min(checkpoints, key=lambda c: abs(c[0] - EARLY_SECONDS), default=None)


def nearest_middle(checkpoints, steps):
    """The (seconds, step) of the checkpoint nearest half the run's ``steps``, or None without one."""
    return min(checkpoints, key=lambda c: abs(c[1] - steps / 2), default=None)


def end_holds(row):
    """Whether the run's end is no worse than its middle on FD, recall and classes (the quality bar's
    rule); None for a row without a scored middle."""
    if not row.get("middle"):
        return None
    end, middle = row["samples"], row["middle"]["samples"]
    return (end["frechet_distance"] <= middle["frechet_distance"] and end["recall"] >= middle["recall"]
            and end["classes_covered"] >= middle["classes_covered"])


def score_kept(run_dir, step, reference, num):
    """``bench.search.score`` of the kept ``ckpt-STEP``: a run directory of its own is made beside the run
    (the run's config, that checkpoint's links, an index naming it)."""
    import tensorflow as tf

    scored = f"{run_dir}-at-{step}"
    os.makedirs(rundir.path(scored, rundir.CHECKPOINTS))
    shutil.copy(rundir.path(run_dir, rundir.CONFIG), rundir.path(scored, rundir.CONFIG))
    for name in glob.glob(os.path.join(f"{run_dir}-{KEPT}", f"ckpt-{step}.*")):
        os.link(name, rundir.path(scored, rundir.CHECKPOINTS, os.path.basename(name)))
    # The checkpoint's path, not its bare name: TF takes a bare name as relative to the working directory.
    checkpoints = rundir.path(scored, rundir.CHECKPOINTS)
    tf.compat.v1.train.update_checkpoint_state(checkpoints, os.path.join(checkpoints, f"ckpt-{step}"))
    metrics, _, _ = search.score(scored, step, reference, num)
    return metrics


def score_early_and_middle(run_dir, checkpoints, run_steps, reference, num):
    """The early and the middle checkpoint of a timed run, each scored once: on a fast machine the
    checkpoint nearest 5 minutes can be the middle one.  (early, middle); None where none was written."""
    scores = {}

    def samples(step):
        if step not in scores:
            scores[step] = score_kept(run_dir, step, reference, num)["samples"]
        return scores[step]
    early, middle = nearest_early(checkpoints), nearest_middle(checkpoints, run_steps)
    return ({"seconds": early[0], "step": early[1], "samples": samples(early[1])} if early else None,
            {"step": middle[1], "samples": samples(middle[1])} if middle else None)


def markdown(info):
    lines = ["# The default command, timed and scored", "",
             f"- command: `{info['command']}` (each row: `python -m genmnist.train --data-dir DATA --out RUN "
             "--seed SEED`, nothing else; a steps column marked `--steps` adds `--steps` and that length)",
             f"- budget: {RUN_BUDGET_MINUTES} min of wall time on an idle 2-core CPU, start-up and export included",
             "- quality: the exported run (G's weight average), 10,000 samples scored with the pinned classifier "
             "as bench/results/search.md scores its rows; `early` is the checkpoint written nearest "
             f"{EARLY_SECONDS // 60} min into the run and `middle` the one nearest half its steps, scored the same way "
             "(score / FD / precision / recall / classes); `end holds`: the end no worse than the middle on FD, "
             "recall and classes",
             "",
             "| date | machine | load start / end | seed | loss | R1 gamma | steps | Adam rates G / D | rate decay | "
             "Adam beta2 | "
             "precision | wall min | CPU min | within budget | "
             "checkpoints (min: step) | score | FD | precision | recall | classes | early (min: step) | early | "
             "middle (step) | end holds | grid |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in info["rows"]:
        m = row["samples"]
        checkpoints = ", ".join(f"{s / 60:.1f}: {step}" for s, step in row["checkpoints"])
        lines.append(f"| {row['date']} | {row['machine']} | {row['load_start']:.1f} / {row['load_end']:.1f} "
                     f"| {row['seed']} | {row.get('loss', LOSS_BEFORE)} | {row['r1_weight']:g}{_r1_schedule(row)} "
                     f"| {row['steps']}{_given(row)} | {_rates(row)} "
                     f"| {row['lr_decay_steps'] or 'none'} | {row.get('beta2', BETA2_BEFORE):g} "
                     f"| {row['precision']} | {row['wall_s'] / 60:.1f} "
                     f"| {row['cpu_s'] / 60:.1f} "
                     f"| {'yes' if row['wall_s'] <= RUN_BUDGET_MINUTES * 60 else 'no'} | {checkpoints} "
                     f"| {m['classifier_score']:.2f} | {m['frechet_distance']:.1f} | {m['precision']:.3f} "
                     f"| {m['recall']:.3f} | {m['classes_covered']} | {_early(row)}{_middle(row)}"
                     f" {_grid(row)} |")
    return "\n".join(lines) + "\n"


def _given(row):
    return " --steps" if row.get("steps_given") else ""  # rows timed before --steps ran the preset's length


def _rates(row):
    g, d = row.get("learning_rate", RATES_BEFORE[0]), row.get("d_learning_rate", RATES_BEFORE[1])
    return f"{rate_text(g)} / {rate_text(d)}"


def _r1_schedule(row):
    every = row.get("r1_every", 1)  # rows timed before lazy R1 have none: R1 on every D step
    share = row.get("penalty_fraction", 1)  # rows timed before R1 on a share of the batch: on all of it
    return (f", every {every}" if every > 1 else "") + (f", on {share:g} of the batch" if share < 1 else "")


def _early(row):
    early = row.get("early")  # rows timed before the early checkpoint was scored have none
    if not early:
        return "| |"
    e = early["samples"]
    return f"{early['seconds'] / 60:.1f}: {early['step']} | {_scores(e)} |"


def _middle(row):
    middle = row.get("middle")  # rows timed before the middle was scored have none
    if not middle:
        return " | |"
    holds = {True: "yes", False: "no"}[end_holds(row)]
    return f" {middle['step']}: {_scores(middle['samples'])} | {holds} |"


def _grid(row):
    return f"[grid]({row['grid']})" if row.get("grid") else ""  # rows timed before grids were kept have none


def _scores(m):
    return (f"{m['classifier_score']:.2f} / {m['frechet_distance']:.1f} / {m['precision']:.3f} / "
            f"{m['recall']:.3f} / {m['classes_covered']}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=common.DATA_DIR, help="real MNIST (IDX files)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", default=None, help="where the runs go (default: a temporary folder, removed)")
    p.add_argument("--num", type=int, default=evaluate.DEFAULT_NUM, help="samples scored per run")
    p.add_argument("--results", default=common.RESULTS)
    p.add_argument("--steps", type=argtypes.positive_int, default=None,
                   help="time the command with --steps N, a candidate length (default: the preset's own)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path = os.path.join(args.results, f"{STEM}.json")
    rows = []
    if os.path.exists(path):  # rows accumulate: each session, machine and seed adds its own
        with open(path) as f:
            rows = json.load(f)["rows"]
    info = {"command": common.command_line("bench.default_run"), "rows": rows}
    reference = common.scoring_reference(args.data_dir, args.num)
    with tempfile.TemporaryDirectory() as scratch:
        runs = args.runs or scratch
        os.makedirs(runs, exist_ok=True)  # a --runs folder not there yet: each run's log goes beside it
        for seed in args.seeds:
            run_dir = os.path.join(runs, f"default-seed{seed}")
            if os.path.exists(run_dir):
                sys.exit(f"bench.default_run: {run_dir} exists; a timed run must start from nothing")
            load_start = os.getloadavg()[0]
            print(f"seed {seed}: timing the default command into {run_dir}", flush=True)
            code, wall, cpu, checkpoints = time_command(default_command(args.data_dir, run_dir, seed, args.steps),
                                                        run_dir + ".log", f"{run_dir}-{KEPT}")
            if code != 0:
                sys.exit(f"bench.default_run: the default command exited {code}; see {run_dir}.log")
            load_end = os.getloadavg()[0]
            config = rundir.read_config(run_dir)  # the run's own preset and length (its precision decides it)
            preset, steps = config["preset"], config["steps"]
            metrics, first, _ = search.score(run_dir, steps, reference, args.num)
            early, middle = score_early_and_middle(run_dir, checkpoints, steps, reference, args.num)
            # The grid's name has the time too: a run after midnight and the next session's run of the same seed
            # share a date.  One clock read, so the row's date and its grid's name agree.
            stamp = time.strftime("%Y-%m-%d-%H%M")
            date = stamp[:len("YYYY-mm-dd")]
            grid = search.write_grid(args.results, f"{stamp}-seed{seed}-{config['precision']}-{steps}", first, STEM)
            info["rows"].append({"date": date, "machine": common.MACHINE, "seed": seed, "grid": grid,
                                 "loss": preset.loss, "r1_weight": preset.r1_weight, "r1_every": preset.r1_every,
                                 "penalty_fraction": preset.penalty_fraction,
                                 "steps": steps, "steps_given": bool(args.steps),
                                 "learning_rate": preset.learning_rate, "d_learning_rate": preset.d_rate,
                                 "lr_decay_steps": preset.lr_decay_steps, "beta2": preset.beta2,
                                 "precision": config["precision"],
                                 "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                                 "load_start": load_start, "load_end": load_end, "checkpoints": checkpoints,
                                 "early": early, "middle": middle,
                                 "classifier_sha256": reference[0].sha256, **metrics})
            common.write_report(args.results, STEM, info, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
