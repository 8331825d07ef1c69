"""Whole-process speed: ``python -m genmnist.train`` against ``python -m legacy_v1.train`` per step.

    python -m bench.process_speed --data-dir ../shared/data/mnist [--rounds 2]

Each variant runs as a whole process at ``--short`` and at ``--long`` steps; the
difference of the two wall times over the difference of steps is its per-step
cost with start-up, data loading, tracing and export cancelled, but with
everything a run does around the step (logging, milestone grids with their
recomputed batch-norm statistics, the progress GIF).  Variants run in
interleaved rounds and ratios are taken within a round (the machine is shared),
then the median over rounds is reported.  Also measures what recomputing the
sampling statistics costs a default run.  Writes
bench/results/process_speed.{json,md}.
"""

import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.common import ROOT, command_line, machine, timing_parser, write_report
from genmnist import precision
from genmnist.models import build_models
from genmnist.presets import get_preset

RUN_STEPS = get_preset("dcgan", "default").run_steps  # a default run's length
TARGET_RATIO, TARGET_STATS_SHARE = 0.9, 0.01


def variants(precisions):
    """name -> argv builder (steps, out dir) for each process timed."""
    table = {"legacy_v1.train": lambda steps, out, data: ["-m", "legacy_v1.train", "--steps", str(steps),
                                                          "--out", out, "--data-dir", data]}
    for name in precisions:
        table[f"genmnist default, {name}"] = (
            lambda steps, out, data, name=name: ["-m", "genmnist.train", "--steps", str(steps), "--out", out,
                                                 "--data-dir", data, "--precision", name])
    return table


def timed_process(argv):
    """(wall s, CPU s of the child) of one ``python argv`` run; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def per_step_rounds(table, data_dir, short, long, rounds):
    """Per-step wall and CPU seconds of each variant in each round (the order rotates per round)."""
    names = list(table)
    wall, cpu = {n: [] for n in names}, {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = {}
            for steps in (short, long):
                with tempfile.TemporaryDirectory() as out:
                    times[steps] = timed_process(table[name](steps, os.path.join(out, "run"), data_dir))
            wall[name].append((times[long][0] - times[short][0]) / (long - short))
            cpu[name].append((times[long][1] - times[short][1]) / (long - short))
            print(f"round {r + 1}/{rounds}: {name}: {wall[name][-1]:.3f} s/step wall, "
                  f"{cpu[name][-1]:.3f} CPU-s/step", file=sys.stderr, flush=True)
    return wall, cpu


def statistics_share(name, data_dir, repeats=5):
    """Seconds of one sampling-statistics recompute (inference_generator()) and of one training step of the
    default preset in ``name``, and the recompute's share of a default run (one per milestone grid)."""
    import tensorflow as tf

    from genmnist.data import batches, load_mnist
    from genmnist.loop import is_milestone, noise
    from genmnist.training import GANTrainer

    preset = get_preset("dcgan", "default")
    with precision.policy(name):
        generator, discriminator = build_models(preset)
    trainer = GANTrainer(generator, discriminator, preset)
    real = next(iter(batches(load_mnist(data_dir).images, preset.run_batch_size, preset.pixel_range, 0)))
    z = noise(preset.run_batch_size, 0, 0)

    def seconds(fn):
        fn(), fn()  # tracing
        out = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        return float(np.median(out))
    step_s = seconds(lambda: float(trainer.train_step(real, z)["g_loss"]))
    recompute_s = seconds(lambda: trainer.inference_generator().get_layer("bn4").moving_mean.numpy())
    grids = sum(1 for done in range(RUN_STEPS + 1) if is_milestone(done) or done == RUN_STEPS)
    tf.keras.backend.clear_session()
    return {"recompute_s": recompute_s, "step_s": step_s, "grids": grids,
            "share": grids * recompute_s / (RUN_STEPS * step_s + grids * recompute_s)}


def main(argv=None):
    p = timing_parser(__doc__, "MNIST IDX directory (both trainers read it)")
    p.add_argument("--short", type=int, default=20, help="steps of the short process")
    p.add_argument("--long", type=int, default=120, help="steps of the long process")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    args = p.parse_args(argv)
    if not 0 < args.short < args.long:
        p.error("need 0 < --short < --long")
    info = {"command": command_line("bench.process_speed"),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(), "short": args.short, "long": args.long, "rounds": args.rounds}
    wall, cpu = per_step_rounds(variants(args.precisions), args.data_dir, args.short, args.long, args.rounds)
    base = "legacy_v1.train"
    info["per_step"] = {name: {"wall_s": float(np.median(wall[name])), "cpu_s": float(np.median(cpu[name])),
                               "rounds_wall_s": wall[name], "rounds_cpu_s": cpu[name],
                               "wall_ratio": float(np.median(np.array(wall[name]) / np.array(wall[base]))),
                               "cpu_ratio": float(np.median(np.array(cpu[name]) / np.array(cpu[base])))}
                        for name in wall}
    info["statistics"] = {name: statistics_share(name, args.data_dir) for name in args.precisions}
    info["machine"]["load_average_end"] = os.getloadavg()
    write_report(args.results, "process_speed", info, markdown)
    return 0


def markdown(info):
    m = info["machine"]
    lines = ["# Whole-process speed: genmnist.train vs legacy_v1.train", "",
             f"- command: `{info['command']}`", f"- date: {info['date']}",
             f"- machine: {m['cpu']}; load average {m['load_average_start'][0]:.1f} at start, "
             f"{m['load_average_end'][0]:.1f} at end (the machine is shared; the CPU-time ratio is the steadier one)",
             f"- per step = (time of a {info['long']}-step process - time of a {info['short']}-step process) / "
             f"{info['long'] - info['short']}; {info['rounds']} interleaved rounds, medians; ratios within a round",
             "", "| process | wall s/step | wall ratio to legacy_v1 | CPU s/step | CPU ratio to legacy_v1 | "
             f"target <= {TARGET_RATIO} |", "|---|---|---|---|---|---|"]
    for name, r in info["per_step"].items():
        met = max(r["wall_ratio"], r["cpu_ratio"]) <= TARGET_RATIO
        met = "" if name.startswith("legacy") else ("yes" if met else "no")
        lines.append(f"| {name} | {r['wall_s']:.3f} | {r['wall_ratio']:.3f} | {r['cpu_s']:.3f} | "
                     f"{r['cpu_ratio']:.3f} | {met} |")
    lines += ["", f"Recomputing the sampling statistics (`inference_generator()`, once per milestone grid) "
              f"in a default {RUN_STEPS}-step run, measured in one process (median of 5 calls after tracing):",
              "", "| precision | recompute s | step s | grids | share of the run | target <= "
              f"{TARGET_STATS_SHARE:.0%} |", "|---|---|---|---|---|---|"]
    for name, s in info["statistics"].items():
        lines.append(f"| {name} | {s['recompute_s']:.3f} | {s['step_s']:.3f} | {s['grids']} | {s['share']:.2%} | "
                     f"{'yes' if s['share'] <= TARGET_STATS_SHARE else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
