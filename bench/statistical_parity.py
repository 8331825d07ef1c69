"""Statistical parity: legacy_v1 and genmnist's legacy preset, trained from the same weights.

    python -m bench.statistical_parity --seeds 0 1 2 --steps 2000

Per seed, the initial weights ``genmnist.train --seed S`` builds are written as a
legacy name-based checkpoint, and both ``legacy_v1.train --init-from`` and
``genmnist.train --preset legacy --init-from`` start from it on the real MNIST.
After that each side draws its own batches and noise, as two runs of the legacy
script would, so the comparison is statistical: the loss curves (mean per
window of steps) and the final generators scored by ``genmnist.evaluate``
(the v1 checkpoint goes through ``genmnist.convert``; both are sampled by the
same code, batch statistics as in the legacy script), against the spread
between seeds.  A side whose output already exists is not retrained.  Writes
``bench/results/statistical_parity.{json,md,png}`` after every seed.
"""

import argparse
import csv
import glob
import json
import os

import numpy as np

from bench import common
from genmnist import convert, evaluate, images, rundir, sample, trained
from genmnist.evaluate import METRICS
from genmnist.models import build_models, legacy_variables
from genmnist.presets import PRESETS

SIDES = ("legacy_v1", "genmnist")
LOG_EVERY = 10  # genmnist.train logs the losses every LOG_EVERY steps; v1's per-step log is read at the same steps


def write_initial_weights(seed, path):
    """The weights genmnist.train builds for ``seed`` (same calls, same order), as a legacy checkpoint."""
    import keras
    keras.utils.set_random_seed(seed)
    generator, discriminator = build_models(PRESETS["legacy"])
    values = {name: v.numpy() for name, v in legacy_variables(generator, discriminator).items()}
    return convert.write_legacy(values, path)


def train_pair(seed, steps, data_dir, runs):
    """Train both sides for one seed (unless done); return {side: (wall seconds or None, output dir)}."""
    init = write_initial_weights(seed, os.path.join(runs, f"init-seed{seed}"))
    v1_dir, v2_dir = (os.path.join(runs, f"{side}-seed{seed}") for side in SIDES)
    out = {}
    if not os.path.exists(os.path.join(v1_dir, "model.index")):
        out["legacy_v1"] = common.run_module(
            "legacy_v1.train", ["--data-dir", data_dir, "--steps", str(steps), "--seed", str(seed), "--out", v1_dir,
                                "--init-from", init], v1_dir + ".log", check=True)[1]
    if not common.reached(v2_dir, steps):
        out["genmnist"] = common.run_module(
            "genmnist.train", ["--preset", "legacy", "--data-dir", data_dir, "--steps", str(steps), "--seed", str(seed),
                               "--out", v2_dir, "--init-from", init, "--log-every", str(LOG_EVERY),
                               "--checkpoint-every", "1000000", "--no-export"], v2_dir + ".log", check=True)[1]
    return out, v1_dir, v2_dir


def loss_curves(v1_dir, v2_dir):
    """{side: {"step": [...], "d_loss": [...], "g_loss": [...]}} at the steps genmnist logged."""
    import tensorflow as tf
    with open(os.path.join(v1_dir, "losses.csv")) as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) % LOG_EVERY == 0]
    curves = {"legacy_v1": {"step": [int(r["step"]) for r in rows], "d_loss": [float(r["d_loss"]) for r in rows],
                            "g_loss": [float(r["g_loss"]) for r in rows]}}
    v2 = {"d_loss": {}, "g_loss": {}}
    for path in sorted(glob.glob(rundir.path(v2_dir, rundir.LOGS, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag in v2:
                    v2[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
    steps = sorted(v2["d_loss"])
    curves["genmnist"] = {"step": steps, **{k: [v2[k][s] for s in steps] for k in v2}}
    return curves


def window_means(curve, key, window):
    steps, values = np.array(curve["step"]), np.array(curve[key])
    edges = np.arange(0, steps.max(), window)
    return [float(values[(steps > a) & (steps <= a + window)].mean()) for a in edges]


def score(run_dir, classifier, real, num, seed):
    generator, preset = trained.load_generator(run_dir)
    pixels = sample.generate(generator, preset, num, seed)
    metrics = evaluate.evaluate_images(pixels, classifier, real)
    return {k: metrics[k] for k in METRICS}, pixels


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=common.DATA_DIR)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--window", type=int, default=200, help="steps per loss-curve window")
    p.add_argument("--num", type=int, default=evaluate.DEFAULT_NUM, help="samples per evaluation")
    p.add_argument("--runs", default=os.path.join(common.ROOT, "runs", "statistical-parity"))
    p.add_argument("--results", default=common.RESULTS)
    args = p.parse_args()

    classifier, real, _ = common.scoring_reference(args.data_dir, args.num)
    os.makedirs(args.results, exist_ok=True)
    results = {"command": common.command_line("bench.statistical_parity"),
               "machine": common.MACHINE,
               "steps": args.steps, "window": args.window, "num": args.num, "seeds": {}}
    for seed in args.seeds:
        walls, v1_dir, v2_dir = train_pair(seed, args.steps, args.data_dir, args.runs)
        converted = v1_dir + "-as-run"
        if not os.path.isdir(converted):
            convert.legacy_to_run(os.path.join(v1_dir, "model"), converted)
        entry = {"train_seconds": walls, "metrics": {}, "curves": {}}
        for side, run_dir in (("legacy_v1", converted), ("genmnist", v2_dir)):
            entry["metrics"][side], pixels = score(run_dir, classifier, real, args.num, seed)
            images.write_png(os.path.join(args.results, f"statistical-parity-{side}-seed{seed}.png"),
                             images.grid(pixels[:64]))
        curves = loss_curves(v1_dir, v2_dir)
        for side, curve in curves.items():
            entry["curves"][side] = {k: window_means(curve, k, args.window) for k in ("d_loss", "g_loss")}
        results["seeds"][str(seed)] = entry
        print(json.dumps({"seed": seed, **entry["metrics"], "train_seconds": walls}), flush=True)
        write_results(args, results)


def write_results(args, results):
    with open(os.path.join(args.results, "statistical_parity.json"), "w") as f:
        json.dump(results, f, indent=1)
    seeds = results["seeds"]
    lines = ["# Statistical parity: legacy_v1 against genmnist's legacy preset", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
             f"{args.steps} iterations after the 30 D-only warm-up steps, batch 128, real MNIST; per seed both "
             f"sides start from the same weights, then draw their own batches and noise. {args.num} samples per "
             "evaluation (genmnist.evaluate; batch statistics at sampling, as the legacy script).", "",
             "## Final samples", "",
             "| seed | side | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 2)]
    for seed, entry in seeds.items():
        for side in SIDES:
            m = entry["metrics"][side]
            lines.append(f"| {seed} | {side} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
    lines += ["", "Mean over seeds, the spread (max - min) between seeds of each side, and the v2 - v1 "
              "difference of the means:", "", "| metric | legacy_v1 mean | spread | genmnist mean | spread "
              "| genmnist - legacy_v1 |", "|---|---|---|---|---|---|"]
    summary = {}
    for k in METRICS:
        values = {side: np.array([e["metrics"][side][k] for e in seeds.values()]) for side in SIDES}
        summary[k] = {side: (values[side].mean(), np.ptp(values[side])) for side in SIDES}
        lines.append(f"| {k} | {summary[k]['legacy_v1'][0]:.3f} | {summary[k]['legacy_v1'][1]:.3f} | "
                     f"{summary[k]['genmnist'][0]:.3f} | {summary[k]['genmnist'][1]:.3f} | "
                     f"{summary[k]['genmnist'][0] - summary[k]['legacy_v1'][0]:+.3f} |")
    lines += ["", f"## Loss curves (mean per {args.window} steps, averaged over seeds)", "",
              "| steps | v1 d_loss | v2 d_loss | v1 g_loss | v2 g_loss |", "|---|---|---|---|---|"]
    mean_curves = {side: {k: np.mean([e["curves"][side][k] for e in seeds.values()], axis=0)
                          for k in ("d_loss", "g_loss")} for side in SIDES}
    for i in range(len(mean_curves["legacy_v1"]["d_loss"])):
        lines.append(f"| {i * args.window + 1}..{(i + 1) * args.window} | "
                     + " | ".join(f"{mean_curves[side][k][i]:.3f}" for k in ("d_loss", "g_loss") for side in SIDES)
                     + " |")
    with open(os.path.join(args.results, "statistical_parity.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(args, seeds)


def plot(args, seeds):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key in zip(axes, ("d_loss", "g_loss")):
        for side, style in zip(SIDES, ("-", "--")):
            for seed, entry in seeds.items():
                values = entry["curves"][side][key]
                xs = (np.arange(len(values)) + 0.5) * args.window
                ax.plot(xs, values, style, label=f"{side} seed {seed}")
        ax.set_title(f"{key}, mean per {args.window} steps")
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.results, "statistical_parity.png"), dpi=80)


if __name__ == "__main__":
    main()
