"""GAN family benchmark: every loss x model on real MNIST at one step budget, several seeds.

    python -m bench.gan_family --steps 1000 --seeds 0 1

Each (model, loss, seed) is one ``python -m genmnist.train --model M --loss L``
run from the model's default preset (the loss brings its own schedule: 5
critic steps and clipping 0.01 for wgan, 5 critic steps and penalty 10 for
wgan-gp), scored with genmnist.evaluate on ``--num`` samples.  A run that
stops on a non-finite loss (exit 3) is reported as diverged; one whose
samples cover at most ``COLLAPSED_CLASSES`` digit classes at >= 5% as mode
collapse.  Finished runs are not retrained, so the benchmark can be resumed.
Writes ``bench/results/gan_family.{json,md}`` and a grid per row after every run.
``--spectral-norm`` trains the same rows with spectral normalisation on D's
layers (rows and grids marked "sn"), so the table compares each loss with and
without it.  ``--collect`` merges the JSON files of runs made elsewhere (other
machines or processes, each with its own ``--results``) into one table, without
training.
"""

import argparse
import json
import os

import numpy as np

from bench import common
from bench.common import MACHINE, command_line, evaluate_run, notes, scoring_reference
from genmnist import images, rundir
from genmnist.evaluate import DEFAULT_NUM, METRICS
from genmnist.presets import USER_LOSSES

COLLAPSED_CLASSES = 3


def train(run_dir, model, loss, seed, steps, data_dir, spectral_norm=False):
    """(exit code, wall seconds); 0 without training when the run already reached ``steps``.

    A run killed part way (the benchmark stopped) resumes from its last checkpoint; its
    wall seconds are then None, since the time before the kill is unknown.
    """
    if common.reached(run_dir, steps):
        return 0, None
    resumed = common.has_checkpoints(run_dir)
    flags = ["--model", model, "--loss", loss, "--seed", str(seed), "--log-every", "50", "--checkpoint-every", "100"]
    code, seconds = common.train(run_dir, steps, data_dir, flags + (["--spectral-norm"] if spectral_norm else []),
                                 log_path=run_dir + ".log")
    return code, None if resumed else seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=common.DATA_DIR)
    p.add_argument("--models", nargs="+", default=["dcgan", "wgan"])
    p.add_argument("--losses", nargs="+", default=list(USER_LOSSES), choices=USER_LOSSES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=1000, help="generator steps per run (the same for every row)")
    p.add_argument("--num", type=int, default=DEFAULT_NUM, help="samples per evaluation")
    p.add_argument("--runs", default=os.path.join(common.ROOT, "runs", "bench-gan-family"))
    p.add_argument("--results", default=common.RESULTS)
    p.add_argument("--spectral-norm", action="store_true",
                   help="train these rows with spectral normalisation on the discriminator (rows marked sn)")
    common.add_collect_flags(p, "merge the rows of these gan_family.json files (later files win)", "JSON")
    args = p.parse_args()

    classifier, real, ceiling = scoring_reference(args.data_dir, args.num)
    if args.collect:
        os.makedirs(args.results, exist_ok=True)
        write_results(args, collect(args.collect), ceiling)
        return
    os.makedirs(args.runs, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    json_path = os.path.join(args.results, "gan_family.json")
    rows = json.load(open(json_path))["rows"] if os.path.exists(json_path) else []
    done = {row_key(r) for r in rows}
    sn = "-sn" if args.spectral_norm else ""
    for model in args.models:
        for loss in args.losses:
            for seed in args.seeds:
                row = {"model": model, "loss": loss, "seed": seed, "steps": args.steps}
                if args.spectral_norm:
                    row["spectral_norm"] = True
                if row_key(row) in done:
                    continue
                run_dir = os.path.join(args.runs, f"{model}-{loss}{sn}-seed{seed}-{args.steps}")
                code, wall = train(run_dir, model, loss, seed, args.steps, args.data_dir, args.spectral_norm)
                row.update({"exit_code": code, "train_seconds": None if wall is None else round(wall, 1),
                            "machine": MACHINE})
                if code == 0:
                    results, pixels = evaluate_run(run_dir, classifier, real, args.num, seed)
                    row.update({k: results["preset"][k] for k in METRICS})
                    row["sampling"] = rundir.read_config(run_dir)["preset"].sampling_stats \
                        if model == "dcgan" else "none"
                    row["other_sampling"] = {label: {k: m[k] for k in METRICS}
                                             for label, m in results.items() if label != "preset"}
                    images.write_png(os.path.join(args.results, f"gan-family-{model}-{loss}{sn}-seed{seed}.png"),
                                     images.grid(pixels[:64]))
                row["failure"] = ("diverged (non-finite loss)" if code == 3 else f"exit {code}" if code else
                                  "mode collapse" if row["classes_covered"] <= COLLAPSED_CLASSES else "")
                rows.append(row)
                print(json.dumps(row), flush=True)
                write_results(args, rows, ceiling)


def row_key(row):
    """What identifies a run: (model, loss, spectral norm, seed, steps)."""
    return row["model"], row["loss"], row.get("spectral_norm", False), row["seed"], row["steps"]


def collect(paths):
    """The rows of several gan_family.json files, one per :func:`row_key`, each tagged with
    the machine that trained it (a file's own machine for rows that lack one)."""
    merged = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for row in data["rows"]:
            merged[row_key(row)] = {"machine": data["machine"], **row}
    return list(merged.values())


def sampling_of(row):
    """The batch-norm statistics a row's generator sampled with ('none': no batch norm).  Rows
    written before this field existed sampled the DCGAN generator with its moving averages as
    trained."""
    return row.get("sampling", "moving" if row["model"] == "dcgan" else "none")


def scored_modes(row):
    """Every batch-norm sampling mode a row was scored in: its own and its ``other_sampling`` ones."""
    return {sampling_of(row)} | {label[len("bn-"):] for label in row.get("other_sampling", {})
                                 if label.startswith("bn-")}


def table_mode(rows):
    """The sampling mode a model's rows are compared in: one that every finished row was scored
    in (the product's 'recomputed' first), so seeds and losses sampled alike are averaged and
    ranked; rows that lack one keep their own modes (None)."""
    common = set.intersection(*[scored_modes(r) for r in rows]) if rows else set()
    return next((m for m in ("recomputed", "moving", "batch", "none") if m in common), None)


def metrics_in(row, mode):
    """A row's metrics with G sampled in ``mode`` (None: the mode it trained to sample in)."""
    if mode is None or mode == sampling_of(row):
        return row
    return row["other_sampling"][f"bn-{mode}"]


def table_order(group_key):
    """Table order of a (model, loss, spectral norm, steps) group: the DCGAN model first, losses
    in the order of --loss's choices, each loss's spectral-norm row after its plain one."""
    model, loss, *rest = group_key
    return model != "dcgan", model, USER_LOSSES.index(loss), rest


def write_results(args, rows, ceiling):
    command = command_line("bench.gan_family")
    machines = sorted({r.get("machine", MACHINE) for r in rows})
    with open(os.path.join(args.results, "gan_family.json"), "w") as f:
        json.dump({"command": command, "machine": "; ".join(machines), "rows": rows,
                   "real_vs_real": {k: ceiling[k] for k in METRICS}}, f, indent=1)
    lines = ["# GAN family benchmark", "", f"Command: `{command}`  ",
             f"Machine{'s' if len(machines) > 1 else ''}: {'; '.join(machines)}  ",
             f"Samples per evaluation: {args.num}. Values: mean (min..max over seeds) of the finished runs; "
             f"'failures' counts diverged runs and runs covering <= {COLLAPSED_CLASSES} classes (mode collapse). "
             "Sampling BN: the generator's batch-norm statistics when sampling, the same for every "
             "row of a model where the runs were scored in a common mode (the JSON rows hold each "
             "run's own mode and the others). Grids: `gan-family-MODEL-LOSS[-sn]-seedS.png`.", "",
             "Train s: wall seconds per seed, in seed order (runs on different machines differ in speed).", "",
             "| model | loss | steps | seeds | sampling BN | " + " | ".join(METRICS) + " | train s | failures |",
             "|" + "---|" * (len(METRICS) + 7)]
    finished = [r for r in rows if r["exit_code"] == 0]
    modes = {model: table_mode([r for r in finished if r["model"] == model]) for model in {r["model"] for r in rows}}
    groups = {}
    for r in sorted(rows, key=lambda r: r["seed"]):  # each group's runs in seed order
        groups.setdefault(row_key(r)[:3] + (r["steps"],), []).append(r)
    for (model, loss, spectral_norm, steps), group in sorted(groups.items(), key=lambda item: table_order(item[0])):
        mode = modes[model]
        scored = [metrics_in(r, mode) for r in group if r["exit_code"] == 0]
        cells = []
        for k in METRICS:
            values = np.array([m[k] for m in scored], float)
            cells.append("-" if not len(values) else f"{values.mean():.3f}" if np.ptp(values) == 0
                         else f"{values.mean():.3f} ({values.min():.3f}..{values.max():.3f})")
        wall = " / ".join("-" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}" for r in group)
        failures = [f"seed {r['seed']}: {r['failure']}" for r in group if r["failure"]]
        sampling = mode or ", ".join(sorted({sampling_of(r) for r in group}))
        loss += " + spectral norm" if spectral_norm else ""
        lines.append(f"| {model} | {loss} | {steps} | {len(group)} | {sampling} | " + " | ".join(cells)
                     + f" | {wall} | {'; '.join(failures) or 'none'} |")
    lines.append("| real vs real | | | | | " + " | ".join(f"{ceiling[k]:.3f}" for k in METRICS) + " | | |")
    lines += notes(args.notes)
    with open(os.path.join(args.results, "gan_family.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
