"""Quality benchmark: presets x seeds x step budgets on real MNIST, scored with genmnist.evaluate.

    python bench/quality.py --data-dir ../shared/data/mnist --presets legacy default \
        --seeds 0 --budgets 500 1000 2000

Each (preset, seed) is trained once with ``python -m genmnist.train`` up to the
first budget, evaluated, then resumed (exact: see genmnist.train) to the next
budget, and so on.  Each evaluation draws ``--num`` samples (``genmnist.sample``)
with the generator's batch norm in its preset's mode and, for batch-norm
models, also in the other modes (moving averages as trained, statistics
recomputed for the final weights, batch statistics), so the choice of sampling
mode is measured too.  The runs keep their checkpoint at every budget, so
``--rescore`` can score finished runs again (for example with a newer evaluation)
without training.
Writes ``bench/results/quality.{json,md}``, the final grids, and a plot of
each metric against step and against wall time.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from genmnist import evaluate, images, rundir, sample  # noqa: E402
from genmnist.classifier import get_classifier  # noqa: E402
from genmnist.data import load_mnist  # noqa: E402
from genmnist.models import BatchNorm, recompute_batch_norm_stats  # noqa: E402

# Cores this process may use (a job pinned with taskset gets fewer than the machine has).
MACHINE = (f"{platform.node()} {platform.machine()}, "
           f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPU cores, no GPU")
METRICS = ("classifier_score", "frechet_distance", "precision", "recall", "class_kl_uniform", "classes_covered")


def train(run_dir, preset, seed, steps, data_dir, extra):
    cmd = [sys.executable, "-m", "genmnist.train", "--preset", preset, "--seed", str(seed),
           "--steps", str(steps), "--out", run_dir, "--data-dir", data_dir, "--log-every", "100",
           "--checkpoint-every", "1000000", "--keep-checkpoints", "0", "--no-export", *extra]
    if os.path.isdir(os.path.join(run_dir, "checkpoints")):
        cmd.append("--resume")
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def scoring_reference(data_dir, num):
    """The evaluation classifier, the real test split prepared for it, and the real-vs-real
    metrics of ``num`` train images: what every benchmark row is scored against."""
    classifier = get_classifier(data_dir)
    real = evaluate.prepare_real(classifier, load_mnist(data_dir, "test").images)
    ceiling = evaluate.evaluate_images(load_mnist(data_dir, "train").images[:num], classifier, real)
    return classifier, real, ceiling


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
        generator, preset = rundir.restore_generator(run_dir, average, step)
        layers = [l for l in generator.layers if isinstance(l, BatchNorm)]
        modes = sampling_modes(preset) if layers else [None]
        prefix = "" if average else "no-ema "
        for mode in sorted(modes, key=["moving", "recomputed", "batch", None].index):  # recompute after 'moving'
            if mode == "recomputed":
                recompute_batch_norm_stats(generator)
            for layer in layers:
                layer.inference_stats = "batch" if mode == "batch" else "moving"
            pixels = sample.generate(generator, preset, num, seed)
            label = "preset" if mode == modes[0] else f"bn-{mode}"
            results[prefix + label] = evaluate.evaluate_images(pixels, classifier, real)
            if label == "preset" and not prefix:
                preset_pixels = pixels
    return results, preset_pixels


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    p.add_argument("--presets", nargs="+", default=["legacy", "default"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--budgets", nargs="+", type=int, default=[500, 1000, 2000])
    p.add_argument("--num", type=int, default=10000, help="samples per evaluation")
    p.add_argument("--runs", default=os.path.join(ROOT, "runs", "bench-quality"))
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--extra", default="", help="extra genmnist.train flags for every run, e.g. '--loss hinge'")
    p.add_argument("--tag", default="quality", help="results file name stem")
    p.add_argument("--rescore", action="store_true",
                   help="train nothing: score the checkpoints these runs kept at --budgets again "
                        "(train s is then unknown: nan)")
    p.add_argument("--collect", nargs="+", metavar="LOG",
                   help="train nothing: rebuild the results from the JSON rows these earlier runs printed")
    p.add_argument("--notes", metavar="MD",
                   help="markdown appended to the results table (where the rows come from), so that a "
                        "rebuilt table keeps it")
    args = p.parse_args()

    classifier, real, ceiling = scoring_reference(args.data_dir, args.num)
    os.makedirs(args.results, exist_ok=True)
    if args.collect:
        rows = [json.loads(line) for path in args.collect for line in open(path) if line.startswith("{")]
        args.presets = sorted({r["preset"] for r in rows}, key=args.presets.index)
        write_results(args, rows, ceiling)
        return
    rows = []
    for preset in args.presets:
        for seed in args.seeds:
            run_dir = os.path.join(args.runs, f"{args.tag}-{preset}-seed{seed}")
            wall = 0.0
            for budget in sorted(args.budgets):
                if args.rescore:
                    wall = float("nan")
                else:
                    wall += train(run_dir, preset, seed, budget, args.data_dir, args.extra.split())
                results, pixels = evaluate_run(run_dir, classifier, real, args.num, seed,
                                               budget if args.rescore else None)
                for mode, metrics in results.items():
                    row = {"preset": preset, "seed": seed, "steps": budget, "sampling": mode,
                           "train_seconds": round(wall, 1), "machine": MACHINE,
                           **{k: metrics[k] for k in METRICS}}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                images.write_png(os.path.join(args.results, f"{args.tag}-{preset}-seed{seed}-{budget}.png"),
                                 images.grid(pixels[:64]))
                write_results(args, rows, ceiling)  # after every evaluation: a killed run keeps its rows


def _summary(rows):
    """mean and spread (min..max over seeds) per (preset, sampling, steps)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["preset"], r["sampling"], r["steps"]), []).append(r)
    out = []
    for (preset, sampling, steps), group in sorted(groups.items()):
        entry = {"preset": preset, "sampling": sampling, "steps": steps, "seeds": len(group)}
        for k in METRICS + ("train_seconds",):
            values = np.array([g[k] for g in group], float)
            entry[k] = (values.mean(), values.min(), values.max())
        out.append(entry)
    return out


def time_to_quality(summary, presets, baseline="legacy", machines=(MACHINE,)):
    """Lines saying when each other preset first matched ``baseline``'s final quality.

    Final quality: the baseline's classifier score and Frechet distance (means over seeds,
    'preset' sampling) at its largest budget.  A preset matches it at the first budget
    where its mean score is at least that and its mean FD at most that; the evaluated
    budgets bound the true crossing from above.  ``machines``: those the rows were trained
    on (None for a row that does not say); the time ratios only mean something for one.
    """
    rows = [e for e in summary if e["sampling"] == "preset"]
    base = [e for e in rows if e["preset"] == baseline]
    if not base or len(presets) < 2:
        return []
    final = max(base, key=lambda e: e["steps"])
    score, fd, seconds = final["classifier_score"][0], final["frechet_distance"][0], final["train_seconds"][0]
    lines = ["", f"Time to {baseline}'s final quality (score >= {score:.3f} and FD <= {fd:.3f}, reached in "
             f"{final['steps']} steps, {seconds:.0f} s):"]
    for preset in presets:
        if preset == baseline:
            continue
        hit = [e for e in sorted(rows, key=lambda e: e["steps"]) if e["preset"] == preset
               and e["classifier_score"][0] >= score and e["frechet_distance"][0] <= fd]
        lines.append(f"- {preset}: " + (f"by {hit[0]['steps']} steps, {hit[0]['train_seconds'][0]:.0f} s = "
                                        f"{hit[0]['train_seconds'][0] / seconds:.2f}x {baseline}'s time"
                                        if hit else "not within the budgets run"))
    if len(set(machines)) != 1 or None in machines:
        lines.append("- Caution: these rows were trained on more than one machine, or do not all say "
                     "which, so the time ratios compare machines as well as presets.")
    return lines


def write_results(args, rows, ceiling):
    command = "python " + " ".join(sys.argv)
    with open(os.path.join(args.results, f"{args.tag}.json"), "w") as f:
        json.dump({"command": command, "machine": MACHINE, "rows": rows,
                   "real_vs_real": {k: ceiling[k] for k in METRICS}}, f, indent=1)
    fmt = lambda m: f"{m[0]:.3f}" if m[1] == m[2] else f"{m[0]:.3f} ({m[1]:.3f}..{m[2]:.3f})"  # noqa: E731
    machine = (MACHINE if not args.collect else f"collected on {MACHINE}"
               + ("; the rows' own machines: see the notes below" if args.notes else ""))
    lines = [f"# Quality benchmark ({args.tag})", "", f"Command: `{command}`  ", f"Machine: {machine}  ",
             f"Samples per evaluation: {args.num}; values are mean (min..max over seeds).", "",
             "| preset | sampling BN | steps | seeds | " + " | ".join(METRICS) + " | train s |",
             "|" + "---|" * (len(METRICS) + 5)]
    summary = _summary(rows)
    for e in summary:
        lines.append(f"| {e['preset']} | {e['sampling']} | {e['steps']} | {e['seeds']} | "
                     + " | ".join(fmt(e[k]) for k in METRICS) + f" | {e['train_seconds'][0]:.0f} |")
    lines.append("| real vs real | | | | " + " | ".join(f"{ceiling[k]:.3f}" for k in METRICS) + " | |")
    lines += time_to_quality(summary, args.presets, machines=[r.get("machine") for r in rows])
    lines += notes(args.notes)
    with open(os.path.join(args.results, f"{args.tag}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(args, rows)


def notes(path):
    """The lines of a hand-written markdown file to append to a results table (none without one)."""
    if not path:
        return []
    with open(path) as f:
        return [""] + f.read().rstrip().splitlines()


def plot(args, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = [e for e in _summary(rows) if e["sampling"] == "preset"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for row, (x_key, x_label) in enumerate((("steps", "training steps"), ("train_seconds", "training wall time (s)"))):
        for ax, metric in zip(axes[row], ("classifier_score", "frechet_distance", "classes_covered")):
            for preset in args.presets:
                series = [e for e in summary if e["preset"] == preset]
                xs = [e[x_key][0] if x_key == "train_seconds" else e[x_key] for e in series]
                ax.plot(xs, [e[metric][0] for e in series], "o-", label=preset)
            ax.set_title(metric)
            ax.set_xlabel(x_label)
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.results, f"{args.tag}.png"), dpi=80)


if __name__ == "__main__":
    main()
