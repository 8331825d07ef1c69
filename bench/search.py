"""The quality search: a queue of (recipe, seed, budget) training jobs, run one at a time.

    python -m bench.search                  # run what the queue still lacks, then stop
    python -m bench.search --list           # the queue, and which rows are done
    setsid nohup python -m bench.search > ~/search.log 2>&1 &   # at the start of a session

The queue is ``bench/search_queue.json``: recipes (a name and its ``genmnist.train``
flags) and jobs (a recipe, seeds and budgets in iterations, which are generator steps
for every loss).  Each (recipe, seed) is one run directory outside the repository
(``--runs``); its budgets are reached in order by resuming that run, which continues
exactly as an uninterrupted run would, and each budget is scored from the checkpoint
the run stops at, with the pinned evaluation classifier.

A finished row (the command, wall and CPU seconds, every metric, a grid of its
samples) is appended to ``bench/results/search.jsonl`` and the table
``search.md`` is rebuilt from all rows.  Rows already there are skipped, so the
queue carries on from session to session; a run killed mid-budget (the session
ended) resumes from its last checkpoint, and the time its killed process had spent
is counted in the row, so wall times never flatter an interrupted row.
"""

import argparse
import fcntl
import json
import os
import resource
import subprocess
import sys
import threading
import time

from bench import common
from genmnist import evaluate, images, precision, rundir, sample, trained
from genmnist.errors import UserError

QUEUE = os.path.join(common.ROOT, "bench", "search_queue.json")
ROWS = "search.jsonl"
TABLE = "search.md"
GRIDS = "search"  # folder of bench/results holding one grid per row
TIMING = "search-timing.json"  # in a run directory: the seconds each training process spent
RECIPE = "search-recipe.json"  # in a run directory: the flags it was started with
HEARTBEAT = 10  # seconds between records of a running training's time (what a kill can lose)
CHECKPOINT_EVERY = 200  # iterations: the most a killed job repeats
SCORE_SEED = 0  # z and subsamples of every row's scoring: rows differ by their runs, never by the draw
COLLAPSED_MEAN_PIXEL = 8  # samples darker than this on average (0..255): the generator died (black grids)


def load_queue(path=QUEUE):
    """[(recipe, flags, seed, steps)] in queue order; budgets of one (recipe, seed) ascending."""
    with open(path) as f:
        queue = json.load(f)
    jobs = []
    for job in queue["jobs"]:
        flags = queue["recipes"][job["recipe"]]
        for seed in job["seeds"]:
            jobs += [(job["recipe"], flags, seed, steps) for steps in sorted(job["steps"])]
    return jobs


def selected(jobs, recipes=None):
    return [j for j in jobs if recipes is None or j[0] in recipes]


def read_rows(results):
    path = os.path.join(results, ROWS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def row_key(recipe, seed, steps):
    return f"{recipe}/seed{seed}/{steps}"


def train_flags(flags, seed):
    """What every search run passes besides its recipe's flags.

    A recipe that names no ``--precision`` trains in float32: ``auto`` picks by machine, and a row
    must mean the same recipe wherever the queue runs."""
    precision_flags = [] if "--precision" in flags else ["--precision", precision.FLOAT32]
    return ["--seed", str(seed), "--no-export", "--log-every", "50", "--checkpoint-every", str(CHECKPOINT_EVERY),
            "--keep-checkpoints", "2", *precision_flags, *flags]


class Timing:
    """The wall and CPU seconds of every training process of a run directory, kept in the run itself.

    A heartbeat thread records the running process's seconds every HEARTBEAT seconds; a process
    killed with the session leaves its last record behind, which the next session counts."""

    def __init__(self, run_dir):
        self.path = rundir.path(run_dir, TIMING)
        self.data = {"segments": [], "running": None}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.data = json.load(f)
        if self.data["running"]:  # a process killed before it ended: its time counts
            self.data["segments"].append({**self.data.pop("running"), "killed": True})
            self.data["running"] = None
            self._write()

    def _write(self):
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(self.path + ".tmp", self.path)

    def totals(self):
        segments = self.data["segments"]
        return (sum(s["wall"] for s in segments), sum(s["cpu"] for s in segments),
                sum(bool(s.get("killed")) for s in segments))

    def mean_load(self):
        """The machine's load average over the training, weighted by wall time (None before any heartbeat):
        near the core count, the run had the machine to itself; above it, its wall time is inflated."""
        timed = [s for s in self.data["segments"] if s.get("load") is not None]
        wall = sum(s["wall"] for s in timed)
        return sum(s["load"] * s["wall"] for s in timed) / wall if wall else None

    def run(self, cmd, log_path, target):
        """Run ``cmd`` (a training up to ``target``), recording its time; its exit code."""
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(log_path, "a") as log:
            process = subprocess.Popen(cmd, cwd=common.ROOT, stdout=log, stderr=subprocess.STDOUT)
        done = threading.Event()

        loads = []  # the 1-minute load average at each heartbeat: how shared the machine was

        def heartbeat():
            while not done.wait(HEARTBEAT):
                loads.append(os.getloadavg()[0])
                self.data["running"] = {"to": target, "wall": time.perf_counter() - start,
                                        "cpu": _process_cpu(process.pid), "load": sum(loads) / len(loads)}
                self._write()
        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        code = process.wait()
        done.set()
        thread.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.data["running"] = None
        self.data["segments"].append({"to": target, "wall": time.perf_counter() - start, "cpu": cpu,
                                      "exit": code, "load": sum(loads) / len(loads) if loads else None})
        self._write()
        return code


def _process_cpu(pid):
    """CPU seconds (user + system) of a running process, from /proc (0 where it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def train_to(run_dir, flags, seed, steps, data_dir, log_path):
    """Train (or resume) ``run_dir`` up to ``steps``; the exit code (0 when it is there already)."""
    if _at_least(run_dir, steps):
        return 0
    args = ["--out", run_dir, "--steps", str(steps), "--data-dir", data_dir, *train_flags(flags, seed)]
    if common.has_checkpoints(run_dir):
        args.append("--resume")
    os.makedirs(run_dir, exist_ok=True)
    recipe_path = rundir.path(run_dir, RECIPE)
    if os.path.exists(recipe_path):
        with open(recipe_path) as f:
            if json.load(f) != flags:  # a renamed or edited recipe must not extend another's run
                raise UserError(f"{run_dir} was started with other flags; give the changed recipe a new name")
    else:
        with open(recipe_path, "w") as f:
            json.dump(flags, f)
    cmd = [sys.executable, "-m", "genmnist.train", *args]
    return Timing(run_dir).run(cmd, log_path, steps)


def _at_least(run_dir, steps):
    latest = rundir.latest_checkpoint(run_dir)
    return latest is not None and rundir.checkpoint_number(latest) >= steps


def score(run_dir, steps, reference, num):
    """Metrics of the run's checkpoint at ``steps`` (and of G's own weights when it keeps an average),
    plus its first 64 samples."""
    classifier, real, _ = reference
    config = rundir.read_config(run_dir)
    result = {}
    averages = (True, False) if config["preset"].ema_decay else (True,)
    for average in averages:
        generator, preset = trained.load_generator(run_dir, average, steps)
        pixels = sample.generate(generator, preset, num, SCORE_SEED)
        metrics = evaluate.evaluate_images(pixels, classifier, real, seed=SCORE_SEED)
        metrics["mean_pixel"] = float(pixels.mean())
        metrics["collapsed"] = metrics["mean_pixel"] < COLLAPSED_MEAN_PIXEL or metrics["classes_covered"] <= 1
        result["samples" if average else "no_ema"] = metrics
        if average:
            first = pixels[:64]
    return result, first, config


def run_job(recipe, flags, seed, steps, args, reference):
    """Train and score one (recipe, seed, steps); the row, or None when the training failed."""
    run_dir = os.path.join(args.runs, f"{recipe}-seed{seed}")
    log_path = os.path.join(args.runs, f"{recipe}-seed{seed}.log")
    print(f"{row_key(recipe, seed, steps)}: training {run_dir} to {steps}", flush=True)
    try:
        code = train_to(run_dir, flags, seed, steps, args.data_dir, log_path)
    except UserError as err:
        print(f"{row_key(recipe, seed, steps)}: {err}", flush=True)
        return None
    timing = Timing(run_dir)
    wall, cpu, killed = timing.totals()
    load = timing.mean_load()
    row = {"recipe": recipe, "flags": flags, "seed": seed, "steps": steps,
           "command": " ".join(["python -m genmnist.train --data-dir DATA", *train_flags(flags, seed),
                                "--steps", str(steps)]),
           "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "killed_processes": killed,
           "load": None if load is None else round(load, 2),
           "machine": precision.cpu_description(), "date": time.strftime("%Y-%m-%d"),
           "classifier_sha256": reference[0].sha256}
    if code == 3:  # a non-finite loss: the recipe diverged, which is a result too
        return {**row, "exit": code, "diverged": True}
    if code != 0:
        print(f"{row_key(recipe, seed, steps)}: training exited {code}; see {log_path}", flush=True)
        return None
    try:
        metrics, first, config = score(run_dir, steps, reference, args.num)
    except UserError as err:  # e.g. the run went past this budget before it was queued: no checkpoint of it
        print(f"{row_key(recipe, seed, steps)}: cannot score: {err}", flush=True)
        return None
    grid = write_grid(args.results, f"{recipe}-seed{seed}-{steps}", first)
    return {**row, "precision": config["precision"], "num": args.num, "grid": grid, **metrics}


def write_grid(results, name, first, folder=GRIDS):
    """The grid of a row's first 64 samples as RESULTS/FOLDER/NAME.png; returns its path under ``results``."""
    grid = os.path.join(folder, f"{name}.png")
    os.makedirs(os.path.join(results, folder), exist_ok=True)
    images.write_png(os.path.join(results, grid), images.grid(first))
    return grid


def append_row(results, row):
    with open(os.path.join(results, ROWS), "a") as f:
        f.write(json.dumps(row) + "\n")


def _fmt(metrics):
    if metrics is None:
        return "| | | | | |"
    return (f"| {metrics['classifier_score']:.2f} | {metrics['frechet_distance']:.1f} | {metrics['precision']:.3f} "
            f"| {metrics['recall']:.3f} | {metrics['classes_covered']}{' collapsed' if metrics['collapsed'] else ''} |")


def _shown(queue_path):
    """The queue as a reader of this repository finds it (a search may run from another checkout)."""
    if os.path.basename(queue_path) == os.path.basename(QUEUE):
        return os.path.relpath(QUEUE, common.ROOT)
    return queue_path


def _load(row):
    return "" if row.get("load") is None else f"{row['load']:.1f}"


def markdown(rows, ceiling, queue_path):
    """The search table: every row, then each (recipe, budget)'s mean over its seeds."""
    shas = sorted({r["classifier_sha256"][:12] for r in rows})
    nums = sorted({r["num"] for r in rows if not r.get("diverged")})  # diverged rows were not scored
    lines = ["# Quality search", "",
             f"`python -m bench.search` runs the queue in `{_shown(queue_path)}` one job at a "
             "time; each row is one (recipe, seed, budget), trained with `genmnist.train` (flags below, "
             f"`--data-dir` the real MNIST files) and scored on {' or '.join(map(str, nums)) or '-'} samples against "
             "the MNIST test split "
             f"with the pinned classifier (sha256 {', '.join(shas) or '-'}). Wall and CPU time cover every training "
             "process of the run up to that budget (start-up included, scoring and export not); a row whose "
             "run was killed and resumed counts the killed process's time too.", "",
             f"Real train images against the test split: score {ceiling['classifier_score']:.2f}, FD "
             f"{ceiling['frechet_distance']:.2f}, precision {ceiling['precision']:.3f}, recall "
             f"{ceiling['recall']:.3f}, {ceiling['classes_covered']} classes.", "",
             "`load` is the machine's mean 1-minute load average while the row trained: near the core count "
             "the run had the machine to itself, above it other work shared the cores and the wall time is "
             "inflated (CPU time much less so).", "",
             "| recipe | seed | steps | precision | wall min | CPU min | load | score | FD | precision | recall "
             "| classes | G's own weights (with --ema): score / FD / recall | grid |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("diverged"):
            lines.append(f"| {r['recipe']} | {r['seed']} | {r['steps']} | | {r['wall_s'] / 60:.1f} | "
                         f"{r['cpu_s'] / 60:.1f} | {_load(r)} | diverged (non-finite loss) | | | | | | |")
            continue
        own = r.get("no_ema")
        own_text = (f"{own['classifier_score']:.2f} / {own['frechet_distance']:.1f} / {own['recall']:.3f}"
                    if own else "")
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['steps']} | {r['precision']} | {r['wall_s'] / 60:.1f} "
                     f"| {r['cpu_s'] / 60:.1f} | {_load(r)} {_fmt(r['samples'])} {own_text} "
                     f"| [grid]({r['grid']}) |")
    groups = {}
    for r in rows:
        if not r.get("diverged"):
            groups.setdefault((r["recipe"], r["steps"]), []).append(r)
    lines += ["", "Mean over seeds:", "",
              "| recipe | steps | seeds | wall min | score | FD | precision | recall | classes (min) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (recipe, steps), group in groups.items():
        mean = lambda key: sum(g["samples"][key] for g in group) / len(group)  # noqa: E731
        lines.append(f"| {recipe} | {steps} | {len(group)} | {sum(g['wall_s'] for g in group) / len(group) / 60:.1f} "
                     f"| {mean('classifier_score'):.2f} | {mean('frechet_distance'):.1f} | {mean('precision'):.3f} "
                     f"| {mean('recall'):.3f} | {min(g['samples']['classes_covered'] for g in group)} |")
    recipes = {r["recipe"]: r["flags"] for r in rows}
    lines += ["", "Recipes (flags added to the command in each row):", ""]
    lines += [f"- `{name}`: `{' '.join(flags) or '(the default preset)'}`" for name, flags in recipes.items()]
    machines = sorted({r["machine"] for r in rows})
    lines += ["", "Machines: " + "; ".join(machines), ""]
    return "\n".join(lines)


def write_table(results, rows, ceiling, queue_path):
    with open(os.path.join(results, TABLE), "w") as f:
        f.write(markdown(rows, ceiling, queue_path))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--queue", default=QUEUE, help="the queue file (recipes and jobs)")
    p.add_argument("--data-dir", default=common.DATA_DIR, help="the real MNIST IDX files")
    p.add_argument("--runs", default=os.path.join(os.path.expanduser("~"), "genmnist-search"),
                   help="where the run directories live (outside the repository)")
    p.add_argument("--results", default=common.RESULTS, help="where search.jsonl, search.md and the grids go")
    p.add_argument("--num", type=int, default=evaluate.DEFAULT_NUM, help="samples scored per row")
    p.add_argument("--only", nargs="+", metavar="RECIPE", help="run only these recipes' jobs")
    p.add_argument("--max-jobs", type=int, default=None, help="stop after this many new rows")
    p.add_argument("--list", action="store_true", help="print the queue with each job's state and stop")
    p.add_argument("--table-only", action="store_true",
                   help="rebuild search.md from search.jsonl (with this code's table layout) and stop")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    done = {row_key(r["recipe"], r["seed"], r["steps"]) for r in read_rows(args.results)}
    if args.list:
        for recipe, flags, seed, steps in selected(load_queue(args.queue), args.only):
            key = row_key(recipe, seed, steps)
            print(f"{'done' if key in done else 'todo'}  {key}  {' '.join(flags)}")
        return 0
    if args.table_only:
        write_table(args.results, read_rows(args.results), common.scoring_reference(args.data_dir, args.num)[2],
                    args.queue)
        return 0
    os.makedirs(args.runs, exist_ok=True)
    lock = open(os.path.join(args.runs, ".search.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"bench.search: another search is running in {args.runs}")
    reference = common.scoring_reference(args.data_dir, args.num)
    print(f"scoring with the {reference[0].describe()}", flush=True)
    new, failed = 0, set()
    while args.max_jobs is None or new < args.max_jobs:
        # The queue is read again before each job: jobs added while the search runs are picked up.
        todo = [j for j in selected(load_queue(args.queue), args.only)
                if row_key(j[0], j[2], j[3]) not in done and (j[0], j[2]) not in failed]
        if not todo:
            break
        recipe, flags, seed, steps = todo[0]
        key = row_key(recipe, seed, steps)
        row = run_job(recipe, flags, seed, steps, args, reference)
        if row is None:
            failed.add((recipe, seed))
            continue
        append_row(args.results, row)
        write_table(args.results, read_rows(args.results), reference[2], args.queue)
        done.add(key)
        new += 1
        summary = ("diverged" if row.get("diverged") else
                   ", ".join(f"{k} {row['samples'][k]:.3f}" for k in evaluate.METRICS))
        print(f"{key}: {row['wall_s'] / 60:.1f} min, {summary}", flush=True)
        if row.get("diverged"):
            failed.add((recipe, seed))  # later budgets of a diverged run cannot be reached
    print(f"bench.search: {new} new rows; {len(done)} of the queue's rows done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
