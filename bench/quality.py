"""Quality benchmark: presets x seeds x step budgets on real MNIST, scored with genmnist.evaluate.

    python -m bench.quality --data-dir ../shared/data/mnist --presets legacy default \
        --seeds 0 --budgets 500 1000 2000

Each (preset, seed) is trained once with ``python -m genmnist.train`` up to the
first budget, evaluated, then resumed (exact: see genmnist.loop) to the next
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

import numpy as np

from bench import common
from bench.common import MACHINE, command_line, evaluate_run, notes, scoring_reference
from genmnist import images
from genmnist.evaluate import DEFAULT_NUM, METRICS


def train(run_dir, preset, seed, steps, data_dir, extra):
    """Wall seconds to train (or resume) the run up to ``steps``, keeping every budget's checkpoint."""
    flags = ["--preset", preset, "--seed", str(seed), "--log-every", "100", "--checkpoint-every", "1000000",
             "--keep-checkpoints", "0", *extra]
    return common.train(run_dir, steps, data_dir, flags, check=True)[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=common.DATA_DIR)
    p.add_argument("--presets", nargs="+", default=["legacy", "default"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--budgets", nargs="+", type=int, default=[500, 1000, 2000])
    p.add_argument("--num", type=int, default=DEFAULT_NUM, help="samples per evaluation")
    p.add_argument("--runs", default=os.path.join(common.ROOT, "runs", "bench-quality"))
    p.add_argument("--results", default=common.RESULTS)
    p.add_argument("--extra", default="", help="extra genmnist.train flags for every run, e.g. '--loss hinge'")
    p.add_argument("--tag", default="quality", help="results file name stem")
    p.add_argument("--rescore", action="store_true",
                   help="train nothing: score the checkpoints these runs kept at --budgets again "
                        "(train s is then unknown: nan)")
    common.add_collect_flags(p, "rebuild the results from the JSON rows these earlier runs printed", "LOG")
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
    command = command_line("bench.quality")
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
